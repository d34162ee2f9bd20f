#!/bin/sh
# Creates MeshMart's RocketMQ topics and consumer groups, then waits until the
# name server routes every topic. The one script for every RocketMQ we run:
#
#   docker compose  the one-shot rocketmq-init container (apache/rocketmq image):
#                     create-topics.sh rocketmq-namesrv:9876 rocketmq-broker:10911
#                   (the mqadmin command defaults to the image's $ROCKETMQ_HOME/bin/mqadmin)
#   tests, `make rocketmq`
#                   meshmart_devstack.rocketmq runs it with the admin tool's JVM
#                   command line (jars from Maven Central) as the mqadmin command:
#                     create-topics.sh -f FILE NAMESRV BROKER java -cp 'lib/*' \
#                         org.apache.rocketmq.tools.command.MQAdminStartup
#
# Usage: create-topics.sh [-f TOPOLOGY] [-t TIMEOUT_SECONDS] NAMESRV_ADDR BROKER_ADDR [MQADMIN...]
#
# TOPOLOGY (default: topology.txt beside this script, generated from
# meshmart_common.messaging.topology; tests/deploy checks that they match)
# has one line per topic or consumer group:
#     topic NAME MESSAGE_TYPE QUEUES
#     group NAME
#
# mqadmin exits 0 even when a command failed, so its output decides: its own
# success line, or an error. While the broker or the name server cannot be
# reached yet (compose starts them side by side) the script retries until
# TIMEOUT; when the broker refuses (a bad topic name or message type) it fails
# at once. On failure the last line says why.
set -eu

usage() {
    echo "usage: $0 [-f TOPOLOGY] [-t TIMEOUT_SECONDS] NAMESRV_ADDR BROKER_ADDR [MQADMIN...]" >&2
    exit 2
}

say() {
    printf 'create-topics: %s\n' "$*"
}

topology="$(dirname "$0")/topology.txt"
timeout=180
while getopts f:t: option; do
    case $option in
        f) topology=$OPTARG ;;
        t) timeout=$OPTARG ;;
        *) usage ;;
    esac
done
shift $((OPTIND - 1))
[ $# -ge 2 ] || usage
namesrv=$1
broker=$2
shift 2
case $timeout in '' | *[!0-9]*) usage ;; esac
if [ $# -eq 0 ]; then
    if [ -z "${ROCKETMQ_HOME:-}" ]; then
        say "no mqadmin command given and ROCKETMQ_HOME is not set" >&2
        exit 2
    fi
    set -- sh "$ROCKETMQ_HOME/bin/mqadmin"
fi
if [ ! -r "$topology" ]; then
    say "cannot read the topology file $topology" >&2
    exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/create-topics.XXXXXX")
trap 'rm -rf "$work"' EXIT

# --- the topology, as the JSON files mqadmin's batch commands read ----------

topics=''
described=''
groups=''
topic_json=''
group_json=''
line_no=0
bad_line() {
    say "$topology line $line_no: $1" >&2
    exit 2
}
while read -r kind name type queues extra || [ -n "${kind:-}" ]; do
    line_no=$((line_no + 1))
    case ${kind:-} in '' | '#'*) continue ;; esac
    [ -z "${extra:-}" ] || bad_line "too many fields"
    # Names become JSON strings below: nothing that would need escaping.
    case ${name:-} in '' | *[!A-Za-z0-9._-]*) bad_line "bad name '${name:-}'" ;; esac
    case $kind in
        topic)
            # Only the form is checked here; the broker judges the value.
            case ${type:-} in '' | *[!A-Z]*) bad_line "bad message type '${type:-}'" ;; esac
            case ${queues:-} in '' | *[!0-9]*) bad_line "bad queue count '${queues:-}'" ;; esac
            topic_json="$topic_json${topic_json:+,}{\"topicName\":\"$name\",\"readQueueNums\":$queues,\"writeQueueNums\":$queues,\"perm\":6,\"attributes\":{\"+message.type\":\"$type\"}}"
            topics="$topics $name"
            described="$described $name ($type)"
            ;;
        group)
            [ -z "${type:-}" ] || bad_line "a group line has only a name"
            group_json="$group_json${group_json:+,}{\"groupName\":\"$name\"}"
            groups="$groups $name"
            ;;
        *) bad_line "'$kind' is neither topic nor group" ;;
    esac
done <"$topology"
if [ -z "$topics" ] && [ -z "$groups" ]; then
    say "$topology names no topic and no group" >&2
    exit 2
fi
printf '[%s]\n' "$topic_json" >"$work/topics.json"
printf '[%s]\n' "$group_json" >"$work/groups.json"

# --- running mqadmin ------------------------------------------------------------

# mqadmin prints these (and still exits 0) when a command did not work.
FAILED='command failed|Exception|\[error\]|does not exists|Error:|Usage:|usage: mqadmin'
# Worth another try: RocketMQ is not (fully) up yet.
UNREACHABLE='RemotingConnectException|RemotingTimeoutException|RemotingSendRequestException|RemotingTooMuchRequestException|connect to [^ ]+ failed|CODE: (2|14|17)[^0-9]|No route info|\[error\]'
# Never worth another try: the broker refused, or the command itself is broken.
REFUSED='CODE: [0-9]+|does not exists|Usage:|usage: mqadmin|: not found|No such file or directory|Could not find or load main class'

deadline=$(($(date +%s) + timeout))

# Why OUTPUT_FILE failed, in one line: the broker's CODE/DESC when there is one.
reason_of() {
    reason=$(grep -Eo 'CODE: [0-9]+ +DESC: .*' "$1" | head -n 1 || true)
    [ -n "$reason" ] || reason=$(grep -Eo 'connect to [^ ]+ failed' "$1" | head -n 1 || true)
    [ -n "$reason" ] || reason=$(grep -E "$FAILED|$REFUSED" "$1" | head -n 1 || true)
    [ -n "$reason" ] || reason="no success line in the output"
    printf '%s' "$reason"
}

# Record that STEP failed (its output is in $work/STEP.out) and end this (sub)shell.
give_up() {
    printf '%s\n' "$2" >"$work/$1.failed"
    exit 1
}

# create SUBCOMMAND JSON_FILE SUCCESS_REGEX MQADMIN... : run one batch command
# until its output shows SUCCESS_REGEX and no error.
create() {
    step=$1
    file=$2
    success=$3
    shift 3
    out="$work/$step.out"
    attempt=0
    while :; do
        attempt=$((attempt + 1))
        "$@" "$step" -n "$namesrv" -b "$broker" -f "$file" >"$out" 2>&1 || true
        if grep -Eq "$success" "$out" && ! grep -Eq "$FAILED" "$out"; then
            return 0
        fi
        if ! grep -Eq "$UNREACHABLE" "$out" && grep -Eq "$REFUSED" "$out"; then
            give_up "$step" "$step refused: $(reason_of "$out")"
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            give_up "$step" "$step did not succeed in $timeout s ($attempt attempts): $(reason_of "$out")"
        fi
        sleep 2
    done
}

# Topics and groups are independent: create both at once (each mqadmin is a JVM).
pids=''
if [ -n "$topics" ]; then
    create updateTopicList "$work/topics.json" 'submit batch of topic config to [^ ]+ success' "$@" &
    pids="$pids $!"
fi
if [ -n "$groups" ]; then
    create updateSubGroupList "$work/groups.json" \
        'submit batch of (subscription )?group config to [^ ]+ success' "$@" &
    pids="$pids $!"
fi
for pid in $pids; do
    wait "$pid" || true
done

# The proxy routes a topic once the name server knows it: wait for that.
if [ -n "$topics" ] && ! ls "$work"/*.failed >/dev/null 2>&1; then
    (
        out="$work/topicList.out"
        while :; do
            "$@" topicList -n "$namesrv" >"$out" 2>&1 || true
            missing=''
            for name in $topics; do
                grep -Eq "^${name}[[:space:]]*\$" "$out" || missing="$missing $name"
            done
            [ -n "$missing" ] || exit 0
            if [ "$(date +%s)" -ge "$deadline" ]; then
                give_up topicList "the name server does not route:$missing"
            fi
            sleep 1
        done
    ) || true
fi

if ls "$work"/*.failed >/dev/null 2>&1; then
    reasons=''
    for failed in "$work"/*.failed; do
        step=$(basename "$failed" .failed)
        echo "--- mqadmin $step (last lines of its output) ---"
        tail -n 30 "$work/$step.out" 2>/dev/null || true
        reasons="$reasons${reasons:+; }$(cat "$failed")"
    done
    say "FAILED against $namesrv / $broker: $reasons"
    exit 1
fi
say "topics:${described:- none}; groups:${groups:- none}; the name server routes every topic"
