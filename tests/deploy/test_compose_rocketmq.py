"""RocketMQ in compose: one topic set-up script, the same one the tests run.

deploy/rocketmq/create-topics.sh creates the topics and consumer groups. The
compose stack's one-shot rocketmq-init container runs it with the RocketMQ
image's mqadmin; meshmart_devstack.rocketmq runs it, with the admin tool's
JVM from Maven Central, every time a test's RocketMQ starts or a test makes a
topic. Its topology file must match meshmart_common.messaging.topology, and
the broker, proxy and services must agree on names and ports.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from meshmart_common.messaging.topology import CONSUMER_GROUPS, TOPICS
from meshmart_devstack.rocketmq import (
    RocketMQServer,
    init_script,
    meshmart_topology,
    query_route,
    topology_text,
)
from tests.deploy.compose_file import ROOT, SERVICES, environment, interpolate, load, services

SCRIPT = ROOT / "deploy" / "rocketmq" / "create-topics.sh"
TOPOLOGY = ROOT / "deploy" / "rocketmq" / "topology.txt"
BROKER_CONF = ROOT / "deploy" / "compose" / "rocketmq" / "broker.conf"
PROXY_JSON = ROOT / "deploy" / "compose" / "rocketmq" / "proxy.json"
SHELLS = [shell for shell in ("dash", "bash") if shutil.which(shell)]

# A stand-in for mqadmin: records each call, then answers as the real one does
# (exit code 0 whatever happened) in the mode the test picks.
FAKE_MQADMIN = r"""
import json, os, sys
from pathlib import Path

state = Path(os.environ["FAKE_STATE"])
mode = os.environ["FAKE_MODE"]
command, args = sys.argv[1], sys.argv[2:]
calls = state / "calls.jsonl"
options = dict(zip(args[::2], args[1::2]))
record = {"command": command, "options": options}
if "-f" in options:
    record["file"] = json.loads(Path(options["-f"]).read_text())
with calls.open("a") as log:
    log.write(json.dumps(record) + "\n")
attempts = [json.loads(line)["command"] for line in calls.read_text().splitlines()].count(command)

FAILED = "org.apache.rocketmq.tools.command.SubCommandException: UpdateTopicListSubCommand"
UNREACHABLE = (
    FAILED + " command failed\n"
    "Caused by: org.apache.rocketmq.remoting.exception.RemotingConnectException: "
    "connect to 127.0.0.1:10911 failed\n"
)
REFUSED = (
    FAILED + " command failed\n"
    "\tat org.apache.rocketmq.tools.command.MQAdminStartup.main0(MQAdminStartup.java:178)\n"
    "Caused by: org.apache.rocketmq.client.exception.MQClientException: CODE: 29  DESC: The "
    "specified topic contains illegal characters, allowing only ^[%|a-zA-Z0-9_-]+$\n"
    "\t... 2 more\n"
)
if mode == "down" or (mode == "starting" and attempts <= 2):
    print(UNREACHABLE)
elif mode == "refuse" and command == "updateTopicList":
    print(REFUSED)
elif command == "updateTopicList":
    (state / "topics").write_text("\n".join(t["topicName"] for t in record["file"]))
    print(f"submit batch of topic config to {options['-b']} success, please check it later.")
elif command == "updateSubGroupList":
    print(f"submit batch of group config to {options['-b']} success, please check it later.")
elif command == "topicList":
    topics = (state / "topics").read_text() if (state / "topics").exists() else ""
    print("RMQ_SYS_TRANS_HALF_TOPIC\nSCHEDULE_TOPIC_XXXX\n" + topics)
"""


def run_script(
    tmp_path: Path, mode: str, *args: str, shell: str = "sh", timeout: int = 60
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    """Run create-topics.sh against the fake mqadmin; its result and the calls it made."""
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    fake = tmp_path / "fake_mqadmin.py"
    fake.write_text(FAKE_MQADMIN)
    result = subprocess.run(
        [shell, str(SCRIPT), *args, "ns:9876", "broker:10911", sys.executable, str(fake)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "FAKE_STATE": str(state), "FAKE_MODE": mode},
    )
    calls_file = state / "calls.jsonl"
    calls = (
        [json.loads(line) for line in calls_file.read_text().splitlines()]
        if (calls_file.exists())
        else []
    )
    return result, calls


# --- the topology ------------------------------------------------------------------------


def _entries(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_the_topology_file_is_the_topology_module() -> None:
    expected = topology_text(*meshmart_topology())
    assert _entries(TOPOLOGY.read_text()) == _entries(expected), (
        "deploy/rocketmq/topology.txt differs from meshmart_common.messaging.topology; "
        f"its lines should be:\n{expected}"
    )
    assert {line.split()[1] for line in _entries(expected) if line.startswith("topic")} == {
        t.name for t in TOPICS
    }
    assert {line.split()[1] for line in _entries(expected) if line.startswith("group")} == {
        g.name for g in CONSUMER_GROUPS
    }


def test_the_devstack_runs_this_script() -> None:
    assert init_script() == SCRIPT


# --- the script, against a stand-in for mqadmin ------------------------------------------


@pytest.mark.parametrize("shell", SHELLS)
def test_the_script_creates_the_topology_in_two_batches_and_waits_for_the_routes(
    tmp_path: Path, shell: str
) -> None:
    result, calls = run_script(tmp_path, "ok", shell=shell)
    assert result.returncode == 0, result.stdout + result.stderr
    by_command = {call["command"]: call for call in calls}
    assert set(by_command) == {"updateTopicList", "updateSubGroupList", "topicList"}
    topics = by_command["updateTopicList"]
    assert topics["options"]["-n"] == "ns:9876"
    assert topics["options"]["-b"] == "broker:10911"
    assert topics["file"] == [
        {
            "topicName": t.name,
            "readQueueNums": 4,
            "writeQueueNums": 4,
            "perm": 6,
            "attributes": {"+message.type": t.kind.value},
        }
        for t in TOPICS
    ]
    groups = [g["groupName"] for g in by_command["updateSubGroupList"]["file"]]
    assert groups == list(dict.fromkeys(g.name for g in CONSUMER_GROUPS))
    assert "the name server routes every topic" in result.stdout.splitlines()[-1]
    assert "order-timeouts (DELAY)" in result.stdout


def test_the_script_waits_while_rocketmq_is_starting(tmp_path: Path) -> None:
    result, calls = run_script(tmp_path, "starting", "-t", "60")
    assert result.returncode == 0, result.stdout + result.stderr
    assert [c["command"] for c in calls].count("updateTopicList") == 3


def test_a_refused_topic_fails_at_once_with_the_brokers_reason(tmp_path: Path) -> None:
    result, calls = run_script(tmp_path, "refuse", "-t", "60")
    assert result.returncode == 1
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("create-topics: FAILED against ns:9876 / broker:10911:")
    assert "updateTopicList refused: CODE: 29  DESC: The specified topic contains" in last
    assert [c["command"] for c in calls].count("updateTopicList") == 1
    assert "topicList" not in [c["command"] for c in calls]


def test_an_unreachable_rocketmq_fails_after_the_timeout(tmp_path: Path) -> None:
    result, _ = run_script(tmp_path, "down", "-t", "1")
    assert result.returncode == 1
    last = result.stdout.strip().splitlines()[-1]
    assert "did not succeed in 1 s" in last
    assert "connect to 127.0.0.1:10911 failed" in last


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        ("topic a normal 4", "bad message type"),
        ('topic a"b NORMAL 4', "bad name"),
        ("topic a NORMAL four", "bad queue count"),
        ("group g extra", "a group line has only a name"),
        ("queue q", "'queue' is neither topic nor group"),
    ],
)
def test_a_malformed_topology_line_is_refused_before_mqadmin_runs(
    tmp_path: Path, line: str, complaint: str
) -> None:
    topology = tmp_path / "topology.txt"
    topology.write_text(f"# comment\ntopic fine NORMAL 4\n{line}\n")
    result, calls = run_script(tmp_path, "ok", "-f", str(topology))
    assert result.returncode == 2
    assert f"line 3: {complaint}" in result.stderr
    assert calls == []


def test_the_script_passes_shellcheck() -> None:
    shellcheck = Path(sys.executable).parent / "shellcheck"
    checked = subprocess.run(
        [str(shellcheck), str(SCRIPT)], capture_output=True, text=True, timeout=60, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


# --- compose agrees with it ----------------------------------------------------------------


def _properties(path: Path) -> dict[str, str]:
    pairs = (
        line.split("=", 1)
        for line in path.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    return {key.strip(): value.strip() for key, value in pairs}


def test_compose_runs_the_script_against_its_own_name_server_and_broker() -> None:
    compose = interpolate(load())
    init = services(compose)["rocketmq-init"]
    broker = _properties(BROKER_CONF)
    proxy = json.loads(PROXY_JSON.read_text())
    assert "./deploy/rocketmq:/opt/meshmart/rocketmq:ro" in init["volumes"]
    assert init["command"][:2] == ["sh", "/opt/meshmart/rocketmq/create-topics.sh"]
    namesrv, broker_addr = init["command"][-2:]
    assert namesrv == broker["namesrvAddr"] == proxy["namesrvAddr"] == "rocketmq-namesrv:9876"
    assert broker_addr == f"rocketmq-broker:{broker['listenPort']}"
    assert init["restart"] == "no"
    assert init["image"] == services(compose)["rocketmq-broker"]["image"]
    # Nothing is created on first use: what the script does not create does not exist.
    assert broker["autoCreateTopicEnable"] == broker["autoCreateSubscriptionGroup"] == "false"
    assert broker["brokerClusterName"] == proxy["rocketMQClusterName"]
    for service in SERVICES:
        endpoint = environment(services(compose)[service])["ROCKETMQ_ENDPOINTS"]
        assert endpoint == f"rocketmq-proxy:{proxy['grpcServerPort']}"
        assert services(compose)[service]["depends_on"]["rocketmq-init"] == {
            "condition": "service_completed_successfully"
        }


# --- and against a real RocketMQ ----------------------------------------------------------


def test_the_committed_script_and_topology_set_up_a_real_rocketmq(
    rocketmq_server: RocketMQServer,
) -> None:
    # As in compose: no -f, so the script reads topology.txt beside itself. (The
    # session's RocketMQ was set up by the same script when it started.)
    result = subprocess.run(
        [
            "sh",
            str(SCRIPT),
            "-t",
            "120",
            rocketmq_server.namesrv_addr,
            rocketmq_server.broker_addr,
            *rocketmq_server.mqadmin_command(),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=rocketmq_server.base_dir,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for topic in TOPICS:
        route = query_route(rocketmq_server.endpoints, topic.name)
        assert (route.code, route.message_types) == ("OK", frozenset({topic.kind.value}))
