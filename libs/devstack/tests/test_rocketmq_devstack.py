"""meshmart_devstack.rocketmq: admin output checks, ports, tools, CLI; one real-server test."""

from __future__ import annotations

import io
import socket
import uuid
from pathlib import Path

import pytest

from meshmart_devstack import rocketmq
from meshmart_devstack.rocketmq import (
    INSTALL_HINT,
    AdminCommandError,
    Ports,
    RocketMQError,
    RocketMQServer,
    RocketMQSetupError,
    TopicSpec,
    check_admin_output,
    ensure_jars,
    meshmart_topology,
    query_route,
    require_tool,
)

# What mqadmin 5.3 printed (exit code 0 every time).
TOPIC_OK = """create topic to 127.0.0.1:20911 success.
TopicConfig [topicName=order-timeouts, readQueueNums=8, writeQueueNums=8, perm=RW-, \
topicFilterType=SINGLE_TAG, topicSysFlag=0, order=false, attributes={+message.type=DELAY}]
"""
TOPIC_BAD_NAME = """org.apache.rocketmq.tools.command.SubCommandException: \
UpdateTopicSubCommand command failed
	at org.apache.rocketmq.tools.command.topic.UpdateTopicSubCommand.execute(\
UpdateTopicSubCommand.java:198)
	at org.apache.rocketmq.tools.command.MQAdminStartup.main0(MQAdminStartup.java:178)
Caused by: org.apache.rocketmq.client.exception.MQClientException: CODE: 29  DESC: The specified \
topic contains illegal characters, allowing only ^[%|a-zA-Z0-9_-]+$
For more information, please visit the url, https://rocketmq.apache.org/docs/bestPractice/06FAQ
"""
TOPIC_NO_CLUSTER = """[error] Make sure the specified clusterName exists or the name server \
connected to is correct.TopicConfig [topicName=foo, readQueueNums=8, writeQueueNums=8, perm=RW-, \
topicFilterType=SINGLE_TAG, topicSysFlag=0, order=false, attributes={}]"""
GROUP_OK = """create subscription group to 127.0.0.1:20911 success.
SubscriptionGroupConfig{groupName=test-group, consumeEnable=true}"""
TOPIC_LIST_OK = (
    "submit batch of topic config to 127.0.0.1:20911 success, please check the result later.\n"
)
GROUP_LIST_OK = (
    "submit batch of group config to 127.0.0.1:20911 success, please check the result later.\n"
)
TOPIC_LIST_BAD_TYPE = """org.apache.rocketmq.tools.command.SubCommandException: \
UpdateTopicListSubCommand command failed
Caused by: org.apache.rocketmq.client.exception.MQClientException: CODE: 1  DESC: value is not \
in set: [UNSPECIFIED, TRANSACTION, FIFO, MIXED, DELAY, NORMAL]
"""


@pytest.mark.parametrize(
    ("command", "output"),
    [
        ("updateTopic", TOPIC_OK),
        ("updateSubGroup", GROUP_OK),
        ("updateTopicList", TOPIC_LIST_OK),
        ("updateSubGroupList", GROUP_LIST_OK),
    ],
)
def test_successful_admin_output_passes(command: str, output: str) -> None:
    check_admin_output(command, output)


@pytest.mark.parametrize(
    ("command", "output", "reason"),
    [
        ("updateTopic", TOPIC_BAD_NAME, "CODE: 29"),
        ("updateTopic", TOPIC_NO_CLUSTER, "[error]"),
        ("updateTopicList", TOPIC_LIST_BAD_TYPE, "CODE: 1"),
        ("updateTopic", "", "no success line"),
        ("updateTopic", GROUP_OK, "no success line"),  # another command's success
        ("updateSubGroupList", "the file path /x.json does not exists\n", "does not exists"),
        ("updateTopic", "usage: mqadmin updateTopic -b <arg> ...", "usage"),
    ],
)
def test_failed_admin_output_is_detected(command: str, output: str, reason: str) -> None:
    with pytest.raises(AdminCommandError) as raised:
        check_admin_output(command, output)
    assert reason in raised.value.reason
    assert raised.value.command == command
    assert f"mqadmin {command} failed" in str(raised.value)


def test_free_ports_leave_room_for_the_broker() -> None:
    ports = Ports.free()
    assert len(set(ports.all())) == 6
    for port in ports.all():
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # nothing listens there


def test_missing_java_or_maven_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(RocketMQSetupError, match="apt-get install openjdk-17-jre-headless maven"):
        require_tool("java")
    with pytest.raises(RocketMQSetupError, match=r"`mvn` not found"):
        ensure_jars(cache_dir=tmp_path / "cache")
    server = RocketMQServer(tmp_path / "rmq", ports=Ports.free(), cache_dir=tmp_path / "cache")
    with pytest.raises(RocketMQSetupError) as raised:
        server.start()
    assert INSTALL_HINT in str(raised.value)


def test_jars_in_the_cache_are_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lib = tmp_path / rocketmq.ROCKETMQ_VERSION / "lib"
    lib.mkdir(parents=True)
    (tmp_path / rocketmq.ROCKETMQ_VERSION / ".complete").write_text("done\n")
    monkeypatch.setenv("PATH", str(tmp_path))  # no mvn: it must not be needed
    assert ensure_jars(cache_dir=tmp_path) == lib


def test_pom_names_the_server_and_admin_artifacts() -> None:
    pom = rocketmq._pom("5.3.3")
    for artifact in ("rocketmq-namesrv", "rocketmq-proxy", "rocketmq-tools"):
        assert f"<artifactId>{artifact}</artifactId><version>5.3.3</version>" in pom


def test_meshmart_topology_is_read_from_the_topology_module() -> None:
    topics, groups = meshmart_topology()
    kinds = {t.name: t.message_type for t in topics}
    assert kinds == {
        "user-events": "NORMAL",
        "product-events": "NORMAL",
        "order-events": "NORMAL",
        "trade-events": "NORMAL",
        "order-timeouts": "DELAY",
        "audit-events": "NORMAL",
    }
    assert "product-order-events" in groups
    assert len(groups) == len(set(groups))


def test_cli_without_a_running_server(tmp_path: Path) -> None:
    out = io.StringIO()
    assert rocketmq.main(["status", "--base-dir", str(tmp_path)], out=out) == 3
    assert "not running" in out.getvalue()
    out = io.StringIO()
    assert rocketmq.main(["stop", "--base-dir", str(tmp_path)], out=out) == 0
    assert "not running" in out.getvalue()
    out = io.StringIO()
    assert rocketmq.main(["create-topic", "x", "--base-dir", str(tmp_path)], out=out) == 1


def test_a_refused_topic_fails_loudly_on_a_real_server(rocketmq_server: RocketMQServer) -> None:
    with pytest.raises(AdminCommandError, match="CODE: 29"):  # '.' is not allowed
        rocketmq_server.admin("updateTopic", "-b", rocketmq_server.broker_addr, "-t", "bad.name")
    with pytest.raises(AdminCommandError, match="value is not in set"):
        rocketmq_server.create([TopicSpec(f"t-{uuid.uuid4().hex[:8]}", "BOGUS")])  # type: ignore[arg-type]


def test_created_topics_are_routed_with_their_type(rocketmq_server: RocketMQServer) -> None:
    name = f"t-devstack-{uuid.uuid4().hex[:8]}"
    rocketmq_server.create_topic(name, "DELAY")
    route = query_route(rocketmq_server.endpoints, name)
    assert (route.code, route.message_types) == ("OK", frozenset({"DELAY"}))
    assert query_route(rocketmq_server.endpoints, f"{name}-missing").code == "TOPIC_NOT_FOUND"
    assert all(rocketmq_server.running().values())
    assert all(rss for rss in rocketmq_server.memory().values())


def test_start_broker_needs_the_name_server_of_start(tmp_path: Path) -> None:
    with pytest.raises(RocketMQError, match="name server is not running"):
        RocketMQServer(base_dir=tmp_path).start_broker()


def test_the_broker_comes_back_on_the_same_ports_with_its_topics(
    rocketmq_server: RocketMQServer,
) -> None:
    name = f"t-restart-{uuid.uuid4().hex[:8]}"
    rocketmq_server.create_topic(name, "NORMAL")
    rocketmq_server.stop_broker()
    try:
        assert rocketmq_server.running() == {"namesrv": True}
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            assert sock.connect_ex(("127.0.0.1", rocketmq_server.ports.proxy_grpc)) != 0
    finally:
        rocketmq_server.start_broker()
    assert all(rocketmq_server.running().values())
    route = query_route(rocketmq_server.endpoints, name)
    assert (route.code, route.message_types) == ("OK", frozenset({"NORMAL"}))
