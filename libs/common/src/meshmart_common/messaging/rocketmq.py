"""The RocketMQ 5 backend of the message bus, over the proxy's gRPC API.

:class:`RocketMQBus` implements :class:`~meshmart_common.messaging.bus.MessageBus`
with the official ``rocketmq-python-client`` (``import rocketmq``):

- one ``Producer`` publishes everything; a message's tag, key and properties
  map one to one, and ``deliver_at`` becomes the delivery timestamp of a DELAY
  message (RocketMQ 5 types topics: a DELAY topic takes only DELAY messages,
  so a message without ``deliver_at`` on such a topic is sent as "deliver now");
- one ``SimpleConsumer`` per (group, topic) receives with a tag filter
  (``"a || b"``, ``"*"`` for all), an invisible duration and a long poll;
  ``receipt`` of a :class:`ReceivedMessage` is the client's message object,
  which ``ack`` and ``change_invisible_duration`` hand back to that consumer.

The client is blocking (it waits on futures of its own I/O thread), so every
call runs in this bus's thread pool and the event loop is never blocked.
Connection failures, timeouts, unknown topics or groups raise
:class:`BusUnavailable` (retry later); a message the broker can never take
(wrong tag syntax, delayed message on a NORMAL topic, body too large) raises
``ValueError``.

The client sends durations and delivery times in whole seconds: invisible
durations and ``change_invisible_duration`` are rounded up to at least one
second, ``deliver_at`` up to the next second, and ``wait`` is clamped by the
proxy to its own bounds (``grpcClientConsumerMinLongPollingTimeoutMillis``,
5 s by default; the devstack proxy uses 0.5 s). The proxy also refuses
invisible durations under ``minInvisibleTimeMillsForRecv`` (10 s by default;
1 s in the devstack). Message properties with an empty value are not carried
(RocketMQ drops them).

The client writes its own log file under ``~/logs/rocketmq_python/`` (it creates
the folder when imported, so HOME must be writable); this module takes its
logger over instead: warnings and errors go to the service's logging.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import threading
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import grpc
from rocketmq import (
    ClientConfiguration,
    Credentials,
    FilterExpression,
    Message,
    Producer,
    SimpleConsumer,
)
from rocketmq.grpc_protocol import definition_pb2, service_pb2, service_pb2_grpc
from rocketmq.v5.exception import (
    BadRequestException,
    IllegalArgumentException,
    PayloadEmptyException,
    PayloadTooLargeException,
)
from rocketmq.v5.util import Signature

from meshmart_common.messaging.bus import BusUnavailable, OutgoingMessage, ReceivedMessage

__all__ = ["RocketMQBus", "tag_expression"]

log = logging.getLogger(__name__)

# The client logs INFO lines (every heartbeat) into ~/logs/rocketmq_python/ on its
# own; a service logs to its own handlers instead, warnings and errors only.
CLIENT_LOGGER = "rocketmq-python-client"
_client_log = logging.getLogger(CLIENT_LOGGER)
for _handler in list(_client_log.handlers):
    _client_log.removeHandler(_handler)
    _handler.close()
_client_log.setLevel(logging.WARNING)
_client_log.propagate = True

T = TypeVar("T")

# RocketMQ 5 message types (apache.rocketmq.v2.MessageType).
_NORMAL = int(definition_pb2.MessageType.NORMAL)
_DELAY = int(definition_pb2.MessageType.DELAY)
# Status codes that mean "this request can never succeed" rather than "not now".
_CALLER_ERRORS = frozenset(
    int(code)
    for code in (
        definition_pb2.Code.ILLEGAL_TOPIC,
        definition_pb2.Code.ILLEGAL_CONSUMER_GROUP,
        definition_pb2.Code.ILLEGAL_MESSAGE_TAG,
        definition_pb2.Code.ILLEGAL_MESSAGE_KEY,
        definition_pb2.Code.ILLEGAL_MESSAGE_PROPERTY_KEY,
        definition_pb2.Code.ILLEGAL_FILTER_EXPRESSION,
        definition_pb2.Code.ILLEGAL_INVISIBLE_TIME,
        definition_pb2.Code.ILLEGAL_DELIVERY_TIME,
        definition_pb2.Code.MESSAGE_PROPERTY_CONFLICT_WITH_TYPE,
        definition_pb2.Code.MESSAGE_BODY_TOO_LARGE,
        definition_pb2.Code.MESSAGE_PROPERTIES_TOO_LARGE,
    )
)
_INVALID_RECEIPT = int(definition_pb2.Code.INVALID_RECEIPT_HANDLE)
# The proxy's longest long poll (grpcClientConsumerMaxLongPollingTimeoutMillis).
MAX_WAIT_SECONDS = 20
# The most messages one receive asks for (the proxy's batch limit is 32).
MAX_RECEIVE_BATCH = 32


def tag_expression(tags: Collection[str]) -> str:
    """The RocketMQ tag filter for ``tags``: ``"a || b"``, or ``"*"`` for every tag."""
    unique = sorted({tag.strip() for tag in tags})
    if "*" in unique:
        return "*"
    if not unique:
        raise ValueError("tags must name at least one tag (or '*')")
    for tag in unique:
        if not tag or "|" in tag:
            raise ValueError(f"invalid tag {tag!r}: tags are non-empty and have no '|'")
    return " || ".join(unique)


def _seconds_up(duration: timedelta) -> int:
    """Whole seconds, rounded up, at least 1 (the client sends durations in seconds)."""
    return max(1, math.ceil(duration.total_seconds()))


def _translate(exc: BaseException, action: str) -> Exception:
    """The bus error for a client exception raised while doing ``action``."""
    if isinstance(exc, (ValueError, BusUnavailable)):
        return exc
    if isinstance(exc, (IllegalArgumentException, PayloadTooLargeException, PayloadEmptyException)):
        return ValueError(f"RocketMQ cannot {action}: {exc}")
    if isinstance(exc, BadRequestException) and _code_of(exc) in _CALLER_ERRORS:
        return ValueError(f"RocketMQ cannot {action}: {exc}")
    if isinstance(exc, grpc.RpcError):
        return BusUnavailable(f"RocketMQ could not {action}: {_rpc_error(exc)}")
    return BusUnavailable(f"RocketMQ could not {action}: {type(exc).__name__}: {exc}")


def _rpc_error(exc: grpc.RpcError) -> str:
    """``UNAVAILABLE: failed to connect ...`` rather than the multi-line repr."""
    code = getattr(exc, "code", None)
    details = getattr(exc, "details", None)
    if callable(code) and callable(details):
        status = code()
        return f"{getattr(status, 'name', status)}: {details()}"
    return str(exc)


def _code_of(exc: BaseException) -> int | None:
    code = getattr(exc, "code", None)
    return int(code) if isinstance(code, int) else None


@dataclass(slots=True)
class _Consumer:
    """One started SimpleConsumer for a (group, topic) and its current tag filter."""

    client: Any  # rocketmq.SimpleConsumer
    expression: str


class RocketMQBus:
    """:class:`MessageBus` on Apache RocketMQ 5 through its gRPC proxy.

    ``endpoints``: the proxy, ``host:port`` (``;``-separated for several).
    ``namespace``: the RocketMQ namespace of topics and groups (empty: none).
    ``access_key`` / ``secret_key``: credentials when the proxy enforces ACLs.
    ``request_timeout``: deadline of one request (a receive adds its long poll).
    ``ping_topic``: the topic whose route ``ping`` asks for (a missing topic
    makes the bus not ready); None only checks that the proxy answers.
    ``max_workers``: threads for blocking client calls; each waiting receive
    holds one for up to its ``wait``.
    """

    name = "rocketmq"

    def __init__(
        self,
        endpoints: str,
        *,
        namespace: str = "",
        access_key: str = "",
        secret_key: str = "",
        request_timeout: timedelta = timedelta(seconds=5),
        ping_topic: str | None = None,
        max_workers: int = 32,
        settings_timeout: timedelta = timedelta(seconds=10),
    ) -> None:
        if not endpoints.strip():
            raise ValueError("RocketMQ endpoints (host:port of the proxy) are required")
        self.endpoints = endpoints
        self.namespace = namespace
        self.ping_topic = ping_topic
        self._access_key = access_key
        self._secret_key = secret_key
        self._request_timeout = max(1, math.ceil(request_timeout.total_seconds()))
        self._settings_timeout = settings_timeout.total_seconds()
        self._max_workers = max_workers
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()  # guards the attributes below; held briefly
        self._producer_lock = threading.Lock()  # one producer start at a time
        self._consumer_locks: dict[tuple[str, str], threading.Lock] = {}
        self._producer: Any = None  # rocketmq.Producer
        self._consumers: dict[tuple[str, str], _Consumer] = {}
        self._topic_types: dict[str, frozenset[int]] = {}
        self._ping_channel: grpc.Channel | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"RocketMQBus(endpoints={self.endpoints!r}, namespace={self.namespace!r})"

    # ------------------------------------------------------------------ plumbing

    def _configuration(self) -> Any:
        return ClientConfiguration(
            self.endpoints,
            Credentials(self._access_key, self._secret_key),
            namespace=self.namespace,
            request_timeout=self._request_timeout,
        )

    async def _run(self, action: str, func: Callable[[], T]) -> T:
        """Run the blocking ``func`` in the bus's threads; translate client errors."""
        if self._closed:
            raise BusUnavailable("the RocketMQ bus is closed")
        if self._executor is None:
            await self.start()
        executor = self._executor
        if executor is None:
            raise BusUnavailable("the RocketMQ bus is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(executor, func)
        except (ValueError, BusUnavailable):
            raise
        except RuntimeError as exc:
            if "after shutdown" in str(exc) or self._closed:
                raise BusUnavailable("the RocketMQ bus is closed") from exc
            raise _translate(exc, action) from exc
        except Exception as exc:
            raise _translate(exc, action) from exc

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        """Create the thread pool and the producer (idempotent).

        Nothing here needs the proxy: a service starts while RocketMQ is away,
        and publish/receive raise BusUnavailable until it is back.
        """
        with self._lock:
            self._closed = False  # start after close opens the bus again
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self._max_workers, thread_name_prefix="rocketmq-bus"
                )
        await self._run("start the producer", self._producer_sync)

    async def close(self) -> None:
        """Shut the consumers and the producer down, then the thread pool."""
        if self._closed:
            return
        self._closed = True  # new calls fail; clients started meanwhile shut themselves
        executor, self._executor = self._executor, None
        if executor is None:
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(executor, self._shutdown_clients)
        finally:
            await asyncio.to_thread(executor.shutdown, True, cancel_futures=True)

    def _shutdown_clients(self) -> None:
        with self._lock:
            consumers = list(self._consumers.values())
            self._consumers.clear()
            producer, self._producer = self._producer, None
            channel, self._ping_channel = self._ping_channel, None
        for consumer in consumers:
            _quietly(consumer.client.shutdown, "shut a consumer down")
        if producer is not None:
            _quietly(producer.shutdown, "shut the producer down")
        if channel is not None:
            channel.close()

    # ------------------------------------------------------------------ publish

    def _producer_sync(self) -> Any:
        producer = self._producer
        if producer is not None:
            return producer
        with self._producer_lock:
            if self._producer is None:
                started = Producer(self._configuration())
                started.startup()
                with self._lock:
                    closed = self._closed
                    if not closed:
                        self._producer = started
                if closed:
                    _quietly(started.shutdown, "shut the producer down")
                    raise BusUnavailable("the RocketMQ bus is closed")
            return self._producer

    def _accepted_types(self, producer: Any, topic: str) -> frozenset[int]:
        """The message types ``topic``'s queues accept (from its route; cached)."""
        known = self._topic_types.get(topic)
        if known is not None:
            return known
        route = producer._retrieve_topic_route_data(topic)
        types = frozenset(
            int(kind) for queue in route.message_queues for kind in queue.accept_message_types
        )
        self._topic_types[topic] = types
        return types

    def _publish_sync(self, message: OutgoingMessage) -> str:
        producer = self._producer_sync()
        outgoing = Message()
        outgoing.topic = message.topic
        outgoing.body = message.body
        if message.tag:
            outgoing.tag = message.tag
        if message.key:
            outgoing.keys = message.key
        for name, value in message.properties.items():
            if value:
                outgoing.add_property(name, value)
        types = self._accepted_types(producer, message.topic)
        if message.deliver_at is not None:
            if _DELAY not in types:
                raise ValueError(
                    f"topic {message.topic} does not take delayed messages "
                    "(create it with message.type=DELAY)"
                )
            # Seconds (what the client sends), rounded up: never before deliver_at.
            outgoing.delivery_timestamp = math.ceil(message.deliver_at.timestamp())
        elif _DELAY in types and _NORMAL not in types:
            outgoing.delivery_timestamp = math.floor(time.time())
        receipt = producer.send(outgoing)
        return str(receipt.message_id)

    async def publish(self, message: OutgoingMessage) -> str:
        """Send ``message``; return the broker's message id."""
        if message.deliver_at is not None and message.deliver_at.tzinfo is None:
            raise ValueError("deliver_at must be timezone-aware")
        if not message.body:
            raise ValueError("RocketMQ does not carry empty message bodies")
        return await self._run(
            f"publish to {message.topic}", functools.partial(self._publish_sync, message)
        )

    # ------------------------------------------------------------------ receive

    def _consumer_sync(self, group: str, topic: str, expression: str | None) -> Any:
        """The started SimpleConsumer of (group, topic), filtering on ``expression``
        (None: keep the current filter; "*" for a new consumer)."""
        key = (group, topic)
        with self._lock:
            consumer = self._consumers.get(key)
            key_lock = self._consumer_locks.setdefault(key, threading.Lock())
        with key_lock:  # one start per (group, topic); others wait for it, publish does not
            if consumer is None:
                with self._lock:
                    consumer = self._consumers.get(key)
            if consumer is None:
                consumer = self._start_consumer(group, topic, expression or "*")
                with self._lock:
                    closed = self._closed
                    if not closed:
                        self._consumers[key] = consumer
                if closed:
                    _quietly(consumer.client.shutdown, "shut a consumer down")
                    raise BusUnavailable("the RocketMQ bus is closed")
            elif expression is not None and expression != consumer.expression:
                consumer.client.subscribe(topic, FilterExpression(expression))
                consumer.expression = expression
        return consumer.client

    def _start_consumer(self, group: str, topic: str, expression: str) -> _Consumer:
        client = SimpleConsumer(self._configuration(), group, await_duration=1)
        client.startup()
        try:
            # Fetches the topic's route: fails at once when the proxy is away or
            # the topic does not exist.
            client.subscribe(topic, FilterExpression(expression))
            # The proxy refuses receives until it has the consumer's settings (sent
            # on a telemetry stream once the route is known).
            settings = getattr(client, "_init_settings_event", None)
            if settings is not None and not settings.wait(self._settings_timeout):
                raise BusUnavailable(
                    f"RocketMQ did not confirm consumer {group} on {topic} within "
                    f"{self._settings_timeout:.0f} s"
                )
        except BaseException:
            _quietly(client.shutdown, "shut a consumer down")
            raise
        return _Consumer(client, expression)

    def _receive_sync(
        self,
        group: str,
        topic: str,
        expression: str,
        max_messages: int,
        invisible_seconds: int,
        wait_seconds: int,
    ) -> list[ReceivedMessage]:
        client = self._consumer_sync(group, topic, expression)
        client.await_duration = wait_seconds
        try:
            messages = client.receive(max_messages, invisible_seconds)
        except Exception:
            # A consumer whose requests fail may hold a broken stream: start afresh.
            self._drop_consumer(group, topic, client)
            raise
        return [_received(message) for message in messages or ()]

    def _drop_consumer(self, group: str, topic: str, client: Any) -> None:
        with self._lock:
            current = self._consumers.get((group, topic))
            if current is None or current.client is not client:
                return
            del self._consumers[(group, topic)]
        _quietly(client.shutdown, "shut a consumer down")

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
        """Up to ``max_messages`` messages of ``topic`` with one of ``tags`` for ``group``."""
        if not tags:
            raise ValueError("tags must name at least one tag (or '*')")
        if not 1 <= max_messages <= MAX_RECEIVE_BATCH:
            raise ValueError(f"max_messages must be between 1 and {MAX_RECEIVE_BATCH}")
        if invisible_duration <= timedelta(0):
            raise ValueError("invisible_duration must be positive")
        expression = tag_expression(tags)
        return await self._run(
            f"receive from {topic} for {group}",
            functools.partial(
                self._receive_sync,
                group,
                topic,
                expression,
                max_messages,
                _seconds_up(invisible_duration),
                min(_seconds_up(wait), MAX_WAIT_SECONDS),
            ),
        )

    # ------------------------------------------------------------------ settle

    def _settle_sync(
        self, group: str, message: ReceivedMessage, action: Callable[[Any, Any], None]
    ) -> None:
        receipt = message.receipt
        if not isinstance(receipt, Message):
            raise ValueError("this message was not received from a RocketMQ bus")
        client = self._consumer_sync(group, message.topic, None)
        try:
            action(client, receipt)
        except BadRequestException as exc:
            if _code_of(exc) != _INVALID_RECEIPT:
                raise
            # The receipt expired: the message is (or will be) delivered again,
            # and the consumer's inbox makes that harmless.
            log.warning(
                "RocketMQ receipt of message %s for %s expired; it will be redelivered",
                message.message_id,
                group,
            )

    async def ack(self, group: str, message: ReceivedMessage) -> None:
        """Acknowledge ``message`` for ``group``: it is not delivered to the group again."""
        await self._run(
            f"ack {message.message_id}",
            functools.partial(self._settle_sync, group, message, _ack),
        )

    async def change_invisible_duration(
        self, group: str, message: ReceivedMessage, duration: timedelta
    ) -> None:
        """Deliver ``message`` to ``group`` again after ``duration`` (at least 1 s)."""
        seconds = _seconds_up(duration)
        await self._run(
            f"change the invisible duration of {message.message_id}",
            functools.partial(
                self._settle_sync,
                group,
                message,
                functools.partial(_change_invisible, seconds=seconds),
            ),
        )

    # ------------------------------------------------------------------ ping

    def _ping_sync(self) -> None:
        with self._lock:
            if self._ping_channel is None:
                first = self.endpoints.split(";")[0].strip()
                self._ping_channel = grpc.insecure_channel(first.removeprefix("http://"))
            channel = self._ping_channel
        topic = self.ping_topic or "meshmart-ping"
        request = service_pb2.QueryRouteRequest()
        request.topic.name = topic
        request.topic.resource_namespace = self.namespace
        configuration = self._configuration()
        request.endpoints.CopyFrom(configuration.rpc_endpoints.endpoints)
        metadata = Signature.metadata(configuration, f"meshmart-ping-{id(self)}")
        stub = service_pb2_grpc.MessagingServiceStub(channel)
        try:
            response = stub.QueryRoute(request, timeout=self._request_timeout, metadata=metadata)
        except grpc.RpcError as exc:
            raise BusUnavailable(
                f"RocketMQ proxy {self.endpoints} does not answer: {_rpc_error(exc)}"
            ) from exc
        code = int(response.status.code)
        if self.ping_topic is None:
            return  # any answer means the proxy is up
        if code != int(definition_pb2.Code.OK):
            name = definition_pb2.Code.Name(code)
            raise BusUnavailable(
                f"RocketMQ proxy {self.endpoints} has no route for topic {topic}: "
                f"{name} {response.status.message}"
            )

    async def ping(self) -> None:
        """Raise BusUnavailable unless the proxy answers (and routes ``ping_topic``)."""
        await self._run("answer a ping", self._ping_sync)


def _received(message: Any) -> ReceivedMessage:
    if getattr(message, "corrupted", False):
        log.warning("RocketMQ message %s failed its body checksum", message.message_id)
    keys = sorted(str(key) for key in (message.keys or ()))
    return ReceivedMessage(
        message_id=str(message.message_id),
        topic=str(message.topic),
        tag=str(message.tag or ""),
        key=keys[0] if keys else "",
        body=bytes(message.body or b""),
        properties={str(k): str(v) for k, v in (message.properties or {}).items()},
        delivery_attempt=int(message.delivery_attempt or 1),
        receipt=message,
    )


def _ack(client: Any, message: Any) -> None:
    client.ack(message)


def _change_invisible(client: Any, message: Any, *, seconds: int) -> None:
    client.change_invisible_duration(message, seconds)


def _quietly(func: Callable[[], object], what: str) -> None:
    try:
        func()
    except Exception as exc:  # shutting down: nothing more to do about it
        log.debug("RocketMQ: could not %s: %s", what, exc)
