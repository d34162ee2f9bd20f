"""CloudEvents 1.0 JSON envelopes and typed event payloads.

Every message body is a structured-mode CloudEvent::

    {"specversion": "1.0", "id": "9b2c...", "source": "/meshmart/order",
     "type": "order.created", "time": "2025-05-01T12:00:00.123456Z",
     "datacontenttype": "application/json", "subject": "42", "data": {...}}

A service declares each event's data as an :class:`EventPayload` subclass with
its type and topic::

    class OrderCreated(EventPayload):
        event_type = "order.created"
        topic = "order-events"

        order_id: int
        total_cents: int

Producer and consumers each declare the payloads they use (services share no
code), so there is no global registry: an :class:`EventRegistry` instance maps
types to classes where one is needed, and ``OrderCreated.from_event(event)``
parses one envelope directly.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, Self, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
)

from meshmart_common.messaging.bus import OutgoingMessage
from meshmart_common.messaging.topology import EVENT_TOPICS

SPEC_VERSION = "1.0"
JSON_CONTENT_TYPE = "application/json"
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
REQUEST_ID_PROPERTY = "request_id"
"""Message property: the id of the request that caused the event, so the consumers' log
lines carry it (events published while handling an event pass the same id on)."""


class InvalidEnvelope(ValueError):
    """A message body that is not a CloudEvents 1.0 JSON envelope."""


class InvalidEvent(ValueError):
    """An envelope whose type or data does not fit the expected payload class."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _new_event_id() -> str:
    return str(uuid.uuid4())


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 envelope (structured JSON mode) carrying a JSON object."""

    # Unknown attributes (CloudEvents extensions) are ignored rather than
    # rejected: a newer producer must not break an older consumer.
    model_config = ConfigDict(frozen=True, extra="ignore")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(default_factory=_new_event_id, min_length=1, max_length=64)
    source: str = Field(min_length=1, max_length=255)
    type: str = Field(min_length=1, max_length=100)
    time: datetime = Field(default_factory=_utcnow)
    datacontenttype: Literal["application/json"] = "application/json"
    subject: str | None = Field(default=None, max_length=191)
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("time")
    @classmethod
    def _aware_utc(cls, value: datetime) -> datetime:
        # RFC 3339 requires an offset; a naive time would be read differently
        # by every consumer's local zone.
        if value.tzinfo is None:
            raise ValueError("time must carry a UTC offset (RFC 3339)")
        return value.astimezone(UTC)

    @field_serializer("time")
    def _rfc3339(self, value: datetime) -> str:
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def to_json(self) -> bytes:
        """The envelope as UTF-8 JSON (the message body)."""
        return self.model_dump_json().encode()

    @classmethod
    def from_json(cls, body: bytes | str) -> CloudEvent:
        """Parse a message body; InvalidEnvelope when it is not a CloudEvents 1.0 envelope."""
        try:
            document = json.loads(body)
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidEnvelope(f"the body is not JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise InvalidEnvelope("the body is not a JSON object")
        try:
            return cls.model_validate(document)
        except ValidationError as exc:
            raise InvalidEnvelope(f"the body is not a CloudEvents 1.0 envelope: {exc}") from exc


class EventPayload(BaseModel):
    """Base of typed event data; subclasses set ``event_type`` and ``topic``.

    ``topic`` may be left out for the event types declared in
    :mod:`meshmart_common.messaging.topology`. A subclass without
    ``event_type`` is an abstract family base (for shared fields).
    """

    # Frozen: an event is a fact. Extra fields are ignored so that a producer
    # may add fields before its consumers know them.
    model_config = ConfigDict(frozen=True, extra="ignore")

    event_type: ClassVar[str]
    topic: ClassVar[str]

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if "event_type" not in cls.__dict__:
            return
        if not isinstance(cls.event_type, str) or not cls.event_type:
            raise TypeError(f"{cls.__name__}.event_type must be a non-empty string")
        if getattr(cls, "topic", None) is None:
            topic = EVENT_TOPICS.get(cls.event_type)
            if topic is None:
                raise TypeError(
                    f"{cls.__name__} needs a topic: {cls.event_type!r} is not in the topology"
                )
            cls.topic = topic

    @classmethod
    def from_event(cls, event: CloudEvent) -> Self:
        """This payload from ``event``'s data; InvalidEvent on a type or data mismatch."""
        if event.type != cls.event_type:
            raise InvalidEvent(f"event {event.id} has type {event.type!r}, not {cls.event_type!r}")
        try:
            return cls.model_validate(event.data)
        except ValidationError as exc:
            raise InvalidEvent(f"event {event.id} ({event.type}) has invalid data: {exc}") from exc

    def to_event(
        self,
        *,
        source: str,
        subject: str,
        event_id: str | None = None,
        time: datetime | None = None,
    ) -> CloudEvent:
        """Wrap this payload in a new envelope (``subject`` = the aggregate id)."""
        return CloudEvent(
            id=event_id or _new_event_id(),
            source=source,
            type=self.event_type,
            time=time or _utcnow(),
            subject=subject,
            data=self.model_dump(mode="json"),
        )


P = TypeVar("P", bound=EventPayload)


class EventRegistry:
    """Maps event types to payload classes, to parse envelopes of several types."""

    def __init__(self, *payloads: type[EventPayload]) -> None:
        self._classes: dict[str, type[EventPayload]] = {}
        for payload in payloads:
            self.register(payload)

    def register(self, payload: type[P]) -> type[P]:
        """Add ``payload`` (usable as a class decorator); TypeError on a second class per type."""
        event_type = getattr(payload, "event_type", None)
        if not isinstance(event_type, str):
            raise TypeError(f"{payload.__name__} declares no event_type")
        existing = self._classes.get(event_type)
        if existing is not None and existing is not payload:
            raise TypeError(
                f"event type {event_type!r} is already registered to {existing.__qualname__}"
            )
        self._classes[event_type] = payload
        return payload

    def __contains__(self, event_type: object) -> bool:
        return event_type in self._classes

    @property
    def event_types(self) -> frozenset[str]:
        """Every registered type."""
        return frozenset(self._classes)

    def payload_class(self, event_type: str) -> type[EventPayload]:
        """The class of ``event_type``; InvalidEvent when it is unknown."""
        try:
            return self._classes[event_type]
        except KeyError:
            raise InvalidEvent(f"unknown event type {event_type!r}") from None

    def parse(self, event: CloudEvent) -> EventPayload:
        """``event``'s data as its registered payload class; InvalidEvent otherwise."""
        return self.payload_class(event.type).from_event(event)


def outgoing_message(
    event: CloudEvent,
    topic: str,
    *,
    properties: Mapping[str, str] | None = None,
    deliver_at: datetime | None = None,
) -> OutgoingMessage:
    """The bus message for ``event``: tag = type, key = subject, body = the JSON envelope.

    ``properties`` travel as message properties (the W3C ``traceparent`` and
    ``tracestate`` among them).
    """
    if deliver_at is not None and deliver_at.tzinfo is None:
        raise ValueError("deliver_at must be timezone-aware")
    return OutgoingMessage(
        topic=topic,
        tag=event.type,
        key=event.subject or event.id,
        body=event.to_json(),
        properties=dict(properties or {}),
        deliver_at=deliver_at,
    )


def trace_properties(traceparent: str | None, tracestate: str | None = None) -> dict[str, str]:
    """Message properties carrying a W3C trace context (empty values left out)."""
    properties: dict[str, str] = {}
    if traceparent:
        properties[TRACEPARENT] = traceparent
        if tracestate:
            properties[TRACESTATE] = tracestate
    return properties
