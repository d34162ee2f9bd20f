"""The local durable bus: one SQLite file that every service process on a machine shares.

It implements :class:`~meshmart_common.messaging.bus.MessageBus` with the
same semantics as the RocketMQ backend, for ``make run`` and the fast tests.

Tables (in the bus file, not in any service database):

- ``bus_messages``: every published message, with a monotonically increasing
  ``seq`` (AUTOINCREMENT, so a pruned sequence number is never reused) and the
  time it becomes deliverable (``deliver_at``; publish time when not delayed);
- ``bus_groups``: per consumer group and topic, the ``cursor`` = the highest
  ``seq`` already looked at. A new group starts at 0, i.e. it sees every
  message still retained, including those published before it first
  connected. The groups of :mod:`~meshmart_common.messaging.topology` are
  declared at start-up, so messages wait for a service that starts later;
- ``bus_deliveries``: per group, each message that matched the group's tags
  and is not acked yet: when it is visible again, how often it was handed
  out, and the receipt of the last hand-out.

``receive`` first looks without a write lock whether the group has anything
(most polls find nothing), and only then takes the write lock (``BEGIN
IMMEDIATE``): it moves the group's cursor over new messages (inserting a
delivery row for each matching one) and claims visible deliveries by pushing
their visibility forward. Because SQLite admits one writer at a time, two
processes of one group never claim the same visible message, and a publish
that is still uncommitted can never be skipped by a cursor.

Retention: a message is deleted once every group that declared its topic has
moved past it and acked it, or, in any case, ``retention`` after it became
deliverable. Ad-hoc groups (not in the topology) therefore see what their
topic retains when they first connect, like RocketMQ.

All SQLite work runs in one worker thread per bus object (each operation is
one hop, a whole transaction), so the event loop never blocks and the
operations of concurrent tasks never interleave inside a transaction. The
file uses WAL (readers do not wait for the writer) with ``synchronous=NORMAL``:
committed messages survive a crash of any process; a power cut may lose the
last few commits, which is fine for a development bus.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable, Collection, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from meshmart_common.messaging.bus import BusUnavailable, OutgoingMessage, ReceivedMessage
from meshmart_common.messaging.topology import (
    ALL_TAGS,
    CONSUMER_GROUPS,
    TOPICS,
    ConsumerGroupSpec,
    TopicKind,
    TopicSpec,
)

logger = logging.getLogger("meshmart.messaging.local_bus")

SCHEMA_VERSION = 1
MAX_RECEIVE_BATCH = 32  # RocketMQ's limit for one receive; the same here
_MATERIALIZE_CHUNK = 5000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS bus_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    tag TEXT NOT NULL,
    message_key TEXT NOT NULL,
    body BLOB NOT NULL,
    properties TEXT NOT NULL,
    published_at REAL NOT NULL,
    deliver_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_bus_messages_topic_seq ON bus_messages (topic, seq);
CREATE TABLE IF NOT EXISTS bus_groups (
    group_name TEXT NOT NULL,
    topic TEXT NOT NULL,
    cursor INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    PRIMARY KEY (group_name, topic)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bus_deliveries (
    group_name TEXT NOT NULL,
    seq INTEGER NOT NULL,
    topic TEXT NOT NULL,
    visible_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    receipt TEXT,
    PRIMARY KEY (group_name, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ix_bus_deliveries_ready
    ON bus_deliveries (group_name, topic, visible_at);
CREATE INDEX IF NOT EXISTS ix_bus_deliveries_seq ON bus_deliveries (seq);
"""

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class LocalReceipt:
    """Which hand-out of a message an ack refers to (a later hand-out gets a new token)."""

    seq: int
    token: str


class LocalBus:
    """A durable message bus in one SQLite file, shared by processes on one machine."""

    name = "local"

    def __init__(
        self,
        path: Path | str,
        *,
        retention: timedelta = timedelta(hours=72),
        poll_interval: timedelta = timedelta(milliseconds=50),
        busy_timeout: timedelta = timedelta(seconds=5),
        prune_interval: timedelta = timedelta(minutes=1),
        topics: Iterable[TopicSpec] = TOPICS,
        groups: Iterable[ConsumerGroupSpec] = CONSUMER_GROUPS,
    ) -> None:
        self.path = Path(path)
        self.retention = retention
        self.poll_interval = poll_interval
        self.busy_timeout = busy_timeout
        self.prune_interval = prune_interval
        self._topic_kinds = {topic.name: topic.kind for topic in topics}
        self._declared_groups = tuple(groups)
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._next_prune = 0.0

    # --- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Open (and if needed create) the bus file; idempotent."""
        if self._executor is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="local-bus")
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(executor, self._open)
        except sqlite3.Error as exc:
            executor.shutdown(wait=False)
            raise BusUnavailable(f"cannot open the local bus at {self.path}: {exc}") from exc
        self._executor = executor

    async def close(self) -> None:
        """Close the file and stop the worker thread."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(executor, self._close_connection)
        finally:
            # The single worker has finished everything queued before the close.
            executor.shutdown(wait=False)

    async def ping(self) -> None:
        """Raise BusUnavailable when the bus file cannot be read."""
        await self._run(self._ping)

    # --- the MessageBus operations -----------------------------------------------

    async def publish(self, message: OutgoingMessage) -> str:
        """Store ``message``; return its id."""
        # Same rule as RocketMQ 5: a NORMAL topic refuses delayed messages (a
        # DELAY topic takes an undelayed one as "deliver now").
        kind = self._topic_kinds.get(message.topic)
        if kind is TopicKind.NORMAL and message.deliver_at is not None:
            raise ValueError(f"topic {message.topic} is NORMAL: it takes no delayed messages")
        if message.deliver_at is not None and message.deliver_at.tzinfo is None:
            raise ValueError("deliver_at must be timezone-aware")
        return await self._run(self._publish, message)

    async def receive(
        self,
        group: str,
        topic: str,
        tags: Collection[str],
        *,
        max_messages: int = 16,
        invisible_duration: timedelta = timedelta(seconds=30),
        wait: timedelta = timedelta(seconds=1),
    ) -> list[ReceivedMessage]:
        """Claim up to ``max_messages`` visible messages for ``group``, polling up to ``wait``."""
        if not tags:
            raise ValueError("tags must name at least one tag (or '*')")
        if not 1 <= max_messages <= MAX_RECEIVE_BATCH:
            raise ValueError(f"max_messages must be between 1 and {MAX_RECEIVE_BATCH}")
        if invisible_duration <= timedelta(0):
            raise ValueError("invisible_duration must be positive")
        tag_filter = None if ALL_TAGS in tags else tuple(sorted(set(tags)))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(wait.total_seconds(), 0.0)
        poll = self.poll_interval.total_seconds()
        while True:
            messages = await self._run(
                self._receive,
                group,
                topic,
                tag_filter,
                max_messages,
                invisible_duration.total_seconds(),
            )
            remaining = deadline - loop.time()
            if messages or remaining <= 0:
                return messages
            await asyncio.sleep(min(poll, remaining))

    async def ack(self, group: str, message: ReceivedMessage) -> None:
        """Done with ``message`` for ``group``; a stale receipt (handed out again since) is
        ignored, because the later hand-out is now the one that counts."""
        receipt = _receipt(message)
        acked = await self._run(self._ack, group, receipt)
        if not acked:
            logger.warning(
                "ack of message %s for group %s ignored: it was handed out again or acked",
                message.message_id,
                group,
            )

    async def change_invisible_duration(
        self, group: str, message: ReceivedMessage, duration: timedelta
    ) -> None:
        """Make ``message`` visible to ``group`` again after ``duration`` (same receipt)."""
        receipt = _receipt(message)
        changed = await self._run(
            self._change_visibility, group, receipt, max(duration.total_seconds(), 0.0)
        )
        if not changed:
            logger.warning(
                "visibility change of message %s for group %s ignored: stale receipt",
                message.message_id,
                group,
            )

    async def prune(self) -> int:
        """Delete acked and expired messages now; return how many messages went."""
        return await self._run(self._prune)

    async def backlog(self, group: str, topic: str, tags: Collection[str]) -> int:
        """Due messages of ``topic`` with one of ``tags`` that ``group`` has not acked
        (handed out or not; a delayed message counts once its time has come)."""
        tag_filter = None if ALL_TAGS in tags else tuple(sorted(set(tags)))
        return await self._run(self._backlog, group, topic, tag_filter)

    # --- plumbing ----------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        executor = self._executor
        if executor is None:
            raise BusUnavailable("the local bus is not started")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(executor, functools.partial(fn, *args))
        except sqlite3.Error as exc:
            # Locked past busy_timeout, disk full, file gone: all "try again later".
            raise BusUnavailable(f"local bus: {exc}") from exc
        except RuntimeError as exc:  # the executor was shut down by a concurrent close()
            raise BusUnavailable("the local bus is closed") from exc

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise sqlite3.ProgrammingError("the local bus connection is closed")
        return self._conn

    def _open(self) -> None:
        conn = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout.total_seconds(),
            isolation_level=None,  # explicit BEGIN/COMMIT only
            check_same_thread=False,
        )
        try:
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout.total_seconds() * 1000)}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise sqlite3.DatabaseError(
                        f"bus file schema {version} is newer than this code ({SCHEMA_VERSION})"
                    )
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                now = time.time()
                conn.executemany(
                    "INSERT OR IGNORE INTO bus_groups (group_name, topic, cursor, created_at) "
                    "VALUES (?, ?, 0, ?)",
                    [(group.name, group.topic, now) for group in self._declared_groups],
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _ping(self) -> None:
        self._db.execute("SELECT 1 FROM bus_groups LIMIT 1").fetchall()

    def _backlog(self, group: str, topic: str, tags: tuple[str, ...] | None) -> int:
        db = self._db
        now = time.time()
        db.execute("BEGIN")  # one snapshot: a receive elsewhere moves messages between the two
        try:
            row = db.execute(
                "SELECT cursor FROM bus_groups WHERE group_name = ? AND topic = ?", (group, topic)
            ).fetchone()
            held = db.execute(
                "SELECT COUNT(*) FROM bus_deliveries d JOIN bus_messages m ON m.seq = d.seq "
                "WHERE d.group_name = ? AND d.topic = ? AND m.deliver_at <= ?",
                (group, topic, now),
            ).fetchone()[0]
            params: list[Any] = [topic, row[0] if row is not None else 0, now]
            tag_clause = ""
            if tags is not None:
                tag_clause = f" AND tag IN ({', '.join('?' * len(tags))})"
                params.extend(tags)
            # Only "?" placeholders are spliced in; every value is a parameter.
            unseen = db.execute(
                "SELECT COUNT(*) FROM bus_messages "  # noqa: S608
                "WHERE topic = ? AND seq > ? AND deliver_at <= ?" + tag_clause,
                params,
            ).fetchone()[0]
        finally:
            db.execute("COMMIT")
        return int(held) + int(unseen)

    def _publish(self, message: OutgoingMessage) -> str:
        now = time.time()
        deliver_at = message.deliver_at.timestamp() if message.deliver_at is not None else now
        message_id = uuid.uuid4().hex
        self._db.execute(
            "INSERT INTO bus_messages (message_id, topic, tag, message_key, body, properties, "
            "published_at, deliver_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                message_id,
                message.topic,
                message.tag,
                message.key,
                message.body,
                json.dumps(dict(message.properties)),
                now,
                deliver_at,
            ),
        )
        return message_id

    def _has_work(self, group: str, topic: str, cursor: int, now: float) -> bool:
        row = self._db.execute(
            "SELECT EXISTS (SELECT 1 FROM bus_messages WHERE topic = ? AND seq > ?) "
            "OR EXISTS (SELECT 1 FROM bus_deliveries "
            "           WHERE group_name = ? AND topic = ? AND visible_at <= ?)",
            (topic, cursor, group, topic, now),
        ).fetchone()
        return bool(row[0])

    def _receive(
        self,
        group: str,
        topic: str,
        tags: tuple[str, ...] | None,
        max_messages: int,
        invisible_seconds: float,
    ) -> list[ReceivedMessage]:
        db = self._db
        now = time.time()
        if now >= self._next_prune:
            self._next_prune = now + self.prune_interval.total_seconds()
            self._prune()
        row = db.execute(
            "SELECT cursor FROM bus_groups WHERE group_name = ? AND topic = ?", (group, topic)
        ).fetchone()
        if row is not None and not self._has_work(group, topic, row[0], now):
            return []
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "INSERT OR IGNORE INTO bus_groups (group_name, topic, cursor, created_at) "
                "VALUES (?, ?, 0, ?)",
                (group, topic, now),
            )
            self._advance_cursor(group, topic, tags)
            claimed = self._claim(group, topic, max_messages, now, invisible_seconds)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return claimed

    def _advance_cursor(self, group: str, topic: str, tags: tuple[str, ...] | None) -> None:
        db = self._db
        cursor = db.execute(
            "SELECT cursor FROM bus_groups WHERE group_name = ? AND topic = ?", (group, topic)
        ).fetchone()[0]
        upto = db.execute(
            "SELECT MAX(seq) FROM (SELECT seq FROM bus_messages WHERE topic = ? AND seq > ? "
            "ORDER BY seq LIMIT ?)",
            (topic, cursor, _MATERIALIZE_CHUNK),
        ).fetchone()[0]
        if upto is None:
            return
        tag_clause = ""
        params: list[Any] = [group, topic, cursor, upto]
        if tags is not None:
            # Messages with other tags are passed over for good, as a RocketMQ
            # tag filter would: the group never sees them.
            tag_clause = f" AND tag IN ({', '.join('?' * len(tags))})"
            params.extend(tags)
        # Only "?" placeholders are spliced in; every value is a parameter.
        materialize = (
            "INSERT OR IGNORE INTO bus_deliveries (group_name, seq, topic, visible_at, attempts) "  # noqa: S608
            "SELECT ?, seq, topic, deliver_at, 0 FROM bus_messages "
            "WHERE topic = ? AND seq > ? AND seq <= ?" + tag_clause
        )
        db.execute(materialize, params)
        db.execute(
            "UPDATE bus_groups SET cursor = ? WHERE group_name = ? AND topic = ?",
            (upto, group, topic),
        )

    def _claim(
        self, group: str, topic: str, limit: int, now: float, invisible_seconds: float
    ) -> list[ReceivedMessage]:
        db = self._db
        rows = db.execute(
            "SELECT d.seq, d.attempts, m.message_id, m.tag, m.message_key, m.body, m.properties "
            "FROM bus_deliveries d JOIN bus_messages m ON m.seq = d.seq "
            "WHERE d.group_name = ? AND d.topic = ? AND d.visible_at <= ? "
            "ORDER BY d.seq LIMIT ?",
            (group, topic, now, limit),
        ).fetchall()
        claimed = []
        for seq, attempts, message_id, tag, key, body, properties in rows:
            token = uuid.uuid4().hex
            db.execute(
                "UPDATE bus_deliveries SET visible_at = ?, attempts = attempts + 1, receipt = ? "
                "WHERE group_name = ? AND seq = ?",
                (now + invisible_seconds, token, group, seq),
            )
            claimed.append(
                ReceivedMessage(
                    message_id=message_id,
                    topic=topic,
                    tag=tag,
                    key=key,
                    body=bytes(body),
                    properties=json.loads(properties),
                    delivery_attempt=attempts + 1,
                    receipt=LocalReceipt(seq, token),
                )
            )
        return claimed

    def _ack(self, group: str, receipt: LocalReceipt) -> bool:
        cursor = self._db.execute(
            "DELETE FROM bus_deliveries WHERE group_name = ? AND seq = ? AND receipt = ?",
            (group, receipt.seq, receipt.token),
        )
        return cursor.rowcount > 0

    def _change_visibility(self, group: str, receipt: LocalReceipt, seconds: float) -> bool:
        cursor = self._db.execute(
            "UPDATE bus_deliveries SET visible_at = ? "
            "WHERE group_name = ? AND seq = ? AND receipt = ?",
            (time.time() + seconds, group, receipt.seq, receipt.token),
        )
        return cursor.rowcount > 0

    def _prune(self) -> int:
        db = self._db
        cutoff = time.time() - self.retention.total_seconds()
        db.execute("BEGIN IMMEDIATE")
        try:
            expired = db.execute("DELETE FROM bus_messages WHERE deliver_at < ?", (cutoff,))
            # Done for everyone: at least one group reads the topic, every such
            # group's cursor is past the message and no group still holds it.
            done = db.execute(
                "DELETE FROM bus_messages WHERE seq IN ("
                " SELECT m.seq FROM bus_messages m"
                " WHERE EXISTS (SELECT 1 FROM bus_groups g WHERE g.topic = m.topic)"
                "   AND NOT EXISTS (SELECT 1 FROM bus_groups g"
                "                   WHERE g.topic = m.topic AND g.cursor < m.seq)"
                "   AND NOT EXISTS (SELECT 1 FROM bus_deliveries d WHERE d.seq = m.seq))"
            )
            db.execute(
                "DELETE FROM bus_deliveries WHERE NOT EXISTS "
                "(SELECT 1 FROM bus_messages m WHERE m.seq = bus_deliveries.seq)"
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        removed = max(expired.rowcount, 0) + max(done.rowcount, 0)
        if removed:
            logger.debug("local bus pruned %d messages", removed)
        return removed


def _receipt(message: ReceivedMessage) -> LocalReceipt:
    if not isinstance(message.receipt, LocalReceipt):
        raise ValueError(f"message {message.message_id} was not received from a local bus")
    return message.receipt
