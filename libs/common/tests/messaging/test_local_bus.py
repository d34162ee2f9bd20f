"""What the local bus adds to the bus contract (tests/messaging): processes, retention, errors."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from meshmart_common.messaging.bus import BusUnavailable, OutgoingMessage, ReceivedMessage
from meshmart_common.messaging.local_bus import LocalBus
from meshmart_common.messaging.testing import eventually
from meshmart_common.messaging.topology import ConsumerGroupSpec

TOPIC = "test-local"


def message(tag: str = "thing.happened", key: str = "1", body: bytes = b"{}") -> OutgoingMessage:
    return OutgoingMessage(topic=TOPIC, tag=tag, key=key, body=body)


def stored_messages(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        count: int = conn.execute("SELECT COUNT(*) FROM bus_messages").fetchone()[0]
        return count
    finally:
        conn.close()


CLAIMER = textwrap.dedent(
    """
    import asyncio, os, sys, time
    from datetime import timedelta
    from pathlib import Path
    from meshmart_common.messaging.local_bus import LocalBus

    async def main() -> None:
        path, go, ready = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
        bus = LocalBus(path, poll_interval=timedelta(milliseconds=5), groups=())
        await bus.start()
        (ready / str(os.getpid())).touch()
        while not go.exists():
            time.sleep(0.01)
        while True:
            batch = await bus.receive(
                "claimers", "test-local", ["*"], max_messages=1,
                invisible_duration=timedelta(seconds=120), wait=timedelta(milliseconds=300),
            )
            if not batch:
                break
            for message in batch:
                print(message.key, flush=True)
                await bus.ack("claimers", message)
        await bus.close()

    asyncio.run(main())
    """
)


async def test_processes_of_one_group_never_receive_the_same_message(tmp_path: Path) -> None:
    path = tmp_path / "bus.db"
    bus = LocalBus(path, groups=())
    await bus.start()
    for n in range(60):
        await bus.publish(message(key=str(n)))
    await bus.close()
    go, ready = tmp_path / "go", tmp_path / "ready"
    ready.mkdir()
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CLAIMER,
            str(path),
            str(go),
            str(ready),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(3)
    ]

    async def all_ready() -> bool:
        return len(list(ready.iterdir())) == len(workers)

    # Released together, so that the workers really compete for each message.
    await eventually(all_ready, within=120, what="the workers' start")
    go.touch()
    outputs = [await asyncio.wait_for(worker.communicate(), 120) for worker in workers]

    received: list[str] = []
    for worker, (stdout, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stderr.decode()
        received.extend(stdout.decode().split())
    assert sorted(received, key=int) == [str(n) for n in range(60)]


async def test_a_message_is_pruned_once_every_declared_group_has_acked_it(tmp_path: Path) -> None:
    path = tmp_path / "bus.db"
    groups = [
        ConsumerGroupSpec("first", TOPIC, ("*",), "test", ""),
        ConsumerGroupSpec("second", TOPIC, ("*",), "test", ""),
    ]
    bus = LocalBus(path, groups=groups, poll_interval=timedelta(milliseconds=10))
    await bus.start()
    try:
        await bus.publish(message())
        [first] = await bus.receive("first", TOPIC, ["*"], wait=timedelta(seconds=5))
        await bus.ack("first", first)

        await bus.prune()
        assert stored_messages(path) == 1  # "second" is declared and has not had it yet

        [second] = await bus.receive("second", TOPIC, ["*"], wait=timedelta(seconds=5))
        await bus.prune()
        assert stored_messages(path) == 1  # received but not acked

        await bus.ack("second", second)
        assert await bus.prune() == 1
        assert stored_messages(path) == 0
    finally:
        await bus.close()


async def test_a_message_nobody_reads_yet_waits_for_its_first_group(tmp_path: Path) -> None:
    path = tmp_path / "bus.db"
    bus = LocalBus(path, groups=(), poll_interval=timedelta(milliseconds=10))
    await bus.start()
    try:
        await bus.publish(message(key="early"))
        await bus.prune()
        assert stored_messages(path) == 1

        [early] = await bus.receive("late-group", TOPIC, ["*"], wait=timedelta(seconds=5))
        assert early.key == "early"
    finally:
        await bus.close()


async def test_retention_drops_old_messages_but_not_delayed_ones_before_due(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bus.db"
    bus = LocalBus(path, groups=(), retention=timedelta(0))
    await bus.start()
    try:
        await bus.publish(message(key="now"))
        await bus.publish(
            OutgoingMessage(
                topic=TOPIC,
                tag="thing.happened",
                key="later",
                body=b"{}",
                deliver_at=datetime.now(UTC) + timedelta(hours=1),
            )
        )
        assert await bus.prune() == 1
        assert stored_messages(path) == 1
    finally:
        await bus.close()


async def test_topology_topics_keep_their_message_type(local_bus: LocalBus) -> None:
    due = datetime.now(UTC) + timedelta(minutes=30)
    with pytest.raises(ValueError, match="NORMAL"):
        await local_bus.publish(
            OutgoingMessage(
                topic="order-events", tag="order.created", key="1", body=b"{}", deliver_at=due
            )
        )
    await local_bus.publish(
        OutgoingMessage(
            topic="order-timeouts",
            tag="order.payment_timeout",
            key="1",
            body=b"{}",
            deliver_at=due,
        )
    )
    await local_bus.publish(
        OutgoingMessage(topic="order-events", tag="order.created", key="1", body=b"{}")
    )


async def test_a_stale_receipt_no_longer_settles_the_message(local_bus: LocalBus) -> None:
    await local_bus.publish(message(key="stale"))
    short = timedelta(milliseconds=300)
    [first] = await local_bus.receive(
        "g", TOPIC, ["*"], invisible_duration=short, wait=timedelta(seconds=5)
    )

    async def handed_out_again() -> list[ReceivedMessage]:
        return await local_bus.receive(
            "g", TOPIC, ["*"], invisible_duration=timedelta(seconds=60), wait=timedelta(0)
        )

    [second] = await eventually(handed_out_again, what="the redelivery")
    assert second.delivery_attempt == 2

    await local_bus.ack("g", first)  # stale: the second hand-out is the live one
    await local_bus.change_invisible_duration("g", second, timedelta(0))
    [third] = await eventually(handed_out_again, what="the retry")
    assert (third.message_id, third.delivery_attempt) == (first.message_id, 3)

    await local_bus.ack("g", third)
    assert await local_bus.receive("g", TOPIC, ["*"], wait=timedelta(0)) == []


async def test_a_message_from_another_backend_is_refused(local_bus: LocalBus) -> None:
    foreign = ReceivedMessage(
        message_id="m",
        topic=TOPIC,
        tag="t",
        key="k",
        body=b"",
        properties={},
        delivery_attempt=1,
        receipt="rocketmq-handle",
    )
    with pytest.raises(ValueError, match="not received from a local bus"):
        await local_bus.ack("g", foreign)


@pytest.mark.parametrize(
    ("tags", "max_messages", "invisible"),
    [([], 1, 30), (["*"], 0, 30), (["*"], 33, 30), (["*"], 1, 0)],
    ids=["no-tags", "zero-batch", "huge-batch", "zero-invisible"],
)
async def test_receive_refuses_invalid_arguments(
    local_bus: LocalBus, tags: list[str], max_messages: int, invisible: int
) -> None:
    with pytest.raises(ValueError, match=r"tags|max_messages|invisible"):
        await local_bus.receive(
            "g",
            TOPIC,
            tags,
            max_messages=max_messages,
            invisible_duration=timedelta(seconds=invisible),
        )


async def test_a_bus_that_is_not_started_or_closed_is_unavailable(tmp_path: Path) -> None:
    bus = LocalBus(tmp_path / "bus.db")
    with pytest.raises(BusUnavailable):
        await bus.publish(message())
    with pytest.raises(BusUnavailable):
        await bus.ping()
    await bus.start()
    await bus.start()  # idempotent
    await bus.ping()
    await bus.close()
    await bus.close()
    with pytest.raises(BusUnavailable):
        await bus.receive("g", TOPIC, ["*"], wait=timedelta(0))


async def test_a_write_lock_held_too_long_makes_the_bus_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "bus.db"
    bus = LocalBus(path, busy_timeout=timedelta(milliseconds=200))
    await bus.start()
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(BusUnavailable, match="locked"):
            await bus.publish(message())
        blocker.execute("ROLLBACK")
        await bus.publish(message())  # and works again once the lock is gone
    finally:
        blocker.close()
        await bus.close()


async def test_a_bus_file_from_newer_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bus.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=99")
    conn.close()
    with pytest.raises(BusUnavailable, match="newer"):
        await LocalBus(path).start()


async def test_the_topology_groups_are_declared_at_start(tmp_path: Path) -> None:
    path = tmp_path / "bus.db"
    bus = LocalBus(path)
    await bus.start()
    await bus.close()
    conn = sqlite3.connect(path)
    try:
        groups = {row[0] for row in conn.execute("SELECT group_name FROM bus_groups")}
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        conn.close()
    assert {"product-order-events", "order-payment-timeouts", "data-all-user-events"} <= groups
    assert mode == "wal"
