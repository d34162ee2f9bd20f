"""Service-to-service REST calls: one small async client every service uses.

A :class:`ServiceClient` talks to one named service (``product``, ``trade``...).
It finds the service's instances through a discovery
:class:`~meshmart_common.discovery.Resolver` (or one fixed base URL) and picks
one per attempt with a :class:`~meshmart_common.discovery.Balancer`. Each call
passes on the caller's bearer token and request id (:class:`Caller`), runs
under one deadline for the whole call (all its attempts included), and turns
every way the call can fail into a :mod:`meshmart_common.errors` domain error
that renders as problem+json:

======================================  =========================================
what happened                           raised
======================================  =========================================
connection refused, DNS failure,        :class:`UpstreamUnavailable` (503):
connect timeout, no pooled connection,  the request never reached the service
no instance known, every instance's
circuit open
no answer within the deadline           :class:`GatewayTimeout` (504)
a 5xx answer, a redirect, a broken      :class:`BadGateway` (502)
connection, a 2xx body that is not
JSON (or not the expected shape)
======================================  =========================================

Every 4xx answer, 404 included, is *returned* as a :class:`ServiceResponse`:
only the caller knows whether "no such product" is an error for its own
client, and a 422 usually carries field errors worth passing on.

Resilience (all of it inside :meth:`ServiceClient.request`, so callers see
only the table above):

- a :class:`~meshmart_common.resilience.CircuitBreaker` per instance opens
  after consecutive failures (connect errors, timeouts, 5xx; a 4xx is an
  answer, so a success) and is skipped while open; when every instance is
  open the call fails at once without sending anything;
- a failed attempt is retried, on another instance when there is one, after
  a short jittered backoff, while the call's deadline and the
  :class:`~meshmart_common.resilience.RetryBudget` allow: for any method when
  the request certainly never left (connect refused or timed out, no pooled
  connection), otherwise (read timeout, 5xx, broken connection) only for
  idempotent methods (GET, HEAD, OPTIONS, PUT, DELETE) or a call marked
  ``idempotent=True`` - a POST that might have been processed is never sent
  twice behind the caller's back.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

import httpx
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from meshmart_common.discovery.balancer import RoundRobin
from meshmart_common.discovery.base import Balancer, Endpoint, Resolver, StaticResolver
from meshmart_common.errors import DomainError, ServiceUnavailable
from meshmart_common.messaging.backoff import Backoff
from meshmart_common.resilience import (
    DEFAULT_RETRY_BACKOFF,
    Breakers,
    CircuitBreaker,
    RetryBudget,
)

logger = logging.getLogger("meshmart.service_client")

DEFAULT_TIMEOUT_SECONDS = 5.0
DEFAULT_CONNECT_TIMEOUT_SECONDS = 1.0
DEFAULT_RETRIES = 2

M = TypeVar("M", bound=BaseModel)


class UpstreamError(DomainError):
    """Base of every failed call to another service (catch it to degrade gracefully)."""

    status = 502
    code = "bad-gateway"
    title = "Bad gateway"

    def __init__(
        self,
        detail: str | None = None,
        *,
        service: str = "",
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail, errors=errors, headers=headers)
        self.service = service


class UpstreamUnavailable(UpstreamError, ServiceUnavailable):
    """The other service cannot be reached: nothing was sent, a retry is safe (503)."""

    status = 503
    code = "service-unavailable"
    title = "Service unavailable"


class GatewayTimeout(UpstreamError):
    """The other service did not answer within the call's deadline (504)."""

    status = 504
    code = "gateway-timeout"
    title = "Gateway timeout"


class BadGateway(UpstreamError):
    """The other service answered with a failure or with something unreadable (502)."""

    status = 502
    code = "bad-gateway"
    title = "Bad gateway"


@dataclass(frozen=True, slots=True)
class Caller:
    """Whom a call is made for: the bearer token and the request id to pass on."""

    # Kept out of repr so that logging a caller never writes a bearer token.
    token: str | None = field(default=None, repr=False)
    request_id: str | None = None

    @classmethod
    def of_request(cls, request: Request) -> Caller:
        """The caller of ``request``: its verified principal's token and its request id.

        Only a token that :func:`meshmart_common.auth.current_principal` has
        verified is passed on, never a raw Authorization header.
        """
        principal = getattr(request.state, "principal", None)
        token = getattr(principal, "token", None)
        request_id = getattr(request.state, "request_id", None)
        return cls(
            token=token if isinstance(token, str) and token else None,
            request_id=request_id if isinstance(request_id, str) and request_id else None,
        )

    def headers(self) -> dict[str, str]:
        """The headers that carry this caller to the other service."""
        headers: dict[str, str] = {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.request_id:
            headers["X-Request-ID"] = self.request_id
        return headers


_NO_BODY = object()


@dataclass(frozen=True, slots=True)
class ServiceResponse:
    """A 2xx or 4xx answer of another service, its JSON body decoded (None if none)."""

    service: str
    method: str
    path: str
    status_code: int
    body: Any

    @property
    def ok(self) -> bool:
        """True for a 2xx answer."""
        return 200 <= self.status_code < 300

    @property
    def not_found(self) -> bool:
        """True for a 404 answer."""
        return self.status_code == 404

    def parse(self, model: type[M]) -> M:
        """The 2xx body as ``model``; BadGateway for another answer or a body that does not fit."""
        if not self.ok:
            raise self.unexpected()
        try:
            return model.model_validate(self.body)
        except ValidationError as exc:
            logger.warning(
                "%s %s %s: the body is not a %s: %s",
                self.service,
                self.method,
                self.path,
                model.__name__,
                exc.errors(include_url=False, include_input=False),
            )
            raise BadGateway(
                f"{self.service} sent an answer that cannot be read.", service=self.service
            ) from exc

    def field_errors(self) -> list[dict[str, str]]:
        """The field errors of a problem+json answer (422), each ``{field, message}`` at least.

        Entries that are not objects with a string ``field`` are left out, so the
        result is safe to pass on in this service's own problem.
        """
        errors = self.body.get("errors") if isinstance(self.body, dict) else None
        if not isinstance(errors, list):
            return []
        found: list[dict[str, str]] = []
        for entry in errors:
            if not isinstance(entry, dict) or not isinstance(entry.get("field"), str):
                continue
            error = {
                "field": entry["field"],
                "message": str(entry.get("message") or "is invalid"),
            }
            for extra in ("location", "type"):
                if isinstance(entry.get(extra), str):
                    error[extra] = entry[extra]
            found.append(error)
        return found

    def problem_detail(self) -> str | None:
        """The ``detail`` of a problem+json answer, when it has one."""
        detail = self.body.get("detail") if isinstance(self.body, dict) else None
        return detail if isinstance(detail, str) and detail else None

    def unexpected(self) -> BadGateway:
        """The error to raise for an answer the caller has no use for."""
        return BadGateway(
            f"{self.service} answered {self.method} {self.path} with an unexpected "
            f"{self.status_code}.",
            service=self.service,
        )


IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
"""Methods whose repetition has no further effect (RFC 9110, 9.2.2): safe to retry."""

# Failures where the request certainly never reached the service: a retry on
# another instance is safe whatever the method.
_NOT_SENT_ERRORS = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,  # a misconfigured URL: just as unreachable
)


@dataclass(slots=True)
class _Call:
    """One call to the service, across its attempts."""

    method: str
    path: str
    params: dict[str, str | int] | None
    json: Any
    headers: dict[str, str]
    request_id: str | None
    deadline: float
    retry_when_sent: bool
    scope: asyncio.Timeout | None = None
    in_flight: Endpoint | None = None

    def remaining(self) -> float:
        """Seconds left until the call's deadline."""
        assert self.scope is not None
        when = self.scope.when()
        assert when is not None
        return when - asyncio.get_running_loop().time()


@dataclass(frozen=True, slots=True)
class _Failure:
    """A failed attempt: what to raise if it is the last, and whether the request left."""

    error: UpstreamError
    sent: bool
    reason: str
    cause: BaseException | None = None


BREAKER_STATE_VALUES = {"closed": 0, "half_open": 1, "open": 2}


class UpstreamMetrics(Collector):
    """Prometheus metrics of the calls one app makes to other services.

    ``upstream_requests_total{upstream, instance, outcome}`` counts every
    attempt (retries included) by the instance it went to, so a dashboard
    shows when an instance stops being called; ``upstream_circuit_state``
    (0 closed, 1 half-open, 2 open) is read from the breakers at scrape time.
    Instances are the few a service has (breakers forget old ones).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.attempts = Counter(
            "upstream_requests_total",
            "Attempts of calls to other services by upstream, instance and outcome.",
            ["upstream", "instance", "outcome"],
            registry=registry,
        )
        self._clients: list[ServiceClient] = []
        registry.register(self)

    def watch(self, client: ServiceClient) -> None:
        """Report ``client``'s breaker states."""
        self._clients.append(client)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The breaker state of every instance of every watched client."""
        family = GaugeMetricFamily(
            "upstream_circuit_state",
            "Circuit breaker state per upstream instance: 0 closed, 1 half-open, 2 open.",
            labels=["upstream", "instance"],
        )
        for client in self._clients:
            for instance, state in client.breaker_states().items():
                family.add_metric([client.name, instance], BREAKER_STATE_VALUES.get(state, 2))
        yield family


class ServiceClient:
    """Async REST client of one named service.

    Give either ``base_url`` (one fixed URL, e.g. a Kubernetes service name;
    a :class:`~meshmart_common.discovery.StaticResolver` is made of it) or a
    ``resolver`` that knows the service's healthy instances, e.g.
    ``app.state.resolver``. ``balancer`` picks the instance of each attempt
    (default: round robin).

    ``client`` is an ``httpx.AsyncClient`` to share (one connection pool per
    process, or a mock transport in tests); without one the ServiceClient makes
    its own and :meth:`aclose` closes it. ``timeout`` is the default deadline
    of a whole call in seconds, retries included; each call may set its own.
    ``connect_timeout`` bounds each attempt's connect, so that an instance
    that vanished leaves time to retry on another.

    ``retries`` is how many attempts a call may make after the first;
    ``breakers`` (one circuit breaker per instance) and ``retry_budget`` are
    made with their defaults unless given (pass them to share them or to set
    their clock in tests); ``backoff`` spaces the attempts. ``metrics``
    (the app's :class:`UpstreamMetrics`) counts attempts and shows breakers.
    """

    def __init__(
        self,
        name: str,
        base_url: str | None = None,
        *,
        resolver: Resolver | None = None,
        balancer: Balancer | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_SECONDS,
        retries: int = DEFAULT_RETRIES,
        breakers: Breakers | None = None,
        retry_budget: RetryBudget | None = None,
        backoff: Backoff = DEFAULT_RETRY_BACKOFF,
        client: httpx.AsyncClient | None = None,
        metrics: UpstreamMetrics | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if connect_timeout <= 0:
            raise ValueError("connect_timeout must be positive")
        if retries < 0:
            raise ValueError("retries must not be negative")
        if (base_url is None) == (resolver is None):
            raise ValueError(f"give {name} either a base URL or a resolver")
        if base_url is not None:
            if httpx.URL(base_url).scheme not in ("http", "https"):
                raise ValueError(
                    f"the base URL of {name} must be an http or https URL: {base_url!r}"
                )
            base_url = base_url.rstrip("/")
            resolver = StaticResolver({name: base_url})
        assert resolver is not None
        self.name = name
        self.base_url = base_url
        self.resolver = resolver
        self.balancer: Balancer = balancer if balancer is not None else RoundRobin()
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.retries = retries
        self.breakers = breakers if breakers is not None else Breakers()
        self.retry_budget = retry_budget if retry_budget is not None else RetryBudget()
        self.backoff = backoff
        self._owns_client = client is None
        self._client = client if client is not None else httpx.AsyncClient()
        self.metrics = metrics
        if metrics is not None:
            metrics.watch(self)

    def breaker_states(self) -> dict[str, str]:
        """Instance id -> ``closed`` / ``open`` / ``half_open`` of every instance called."""
        return self.breakers.states()

    async def get(
        self,
        path: str,
        *,
        caller: Caller | None = None,
        params: dict[str, str | int] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - it also bounds httpx's own timeouts
    ) -> ServiceResponse:
        """GET ``path`` (relative to the service's base URL); see :meth:`request`."""
        return await self.request("GET", path, caller=caller, params=params, timeout=timeout)

    async def post(
        self,
        path: str,
        *,
        json: Any = None,
        caller: Caller | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - it also bounds httpx's own timeouts
        idempotent: bool | None = None,
    ) -> ServiceResponse:
        """POST a JSON body to ``path`` (relative to the service's base URL); see :meth:`request`.

        Pass ``idempotent=True`` for a POST without side effects (a price
        quote, a search) so that it is retried like a GET.
        """
        return await self.request(
            "POST", path, caller=caller, json=json, timeout=timeout, idempotent=idempotent
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        caller: Caller | None = None,
        params: dict[str, str | int] | None = None,
        json: Any = None,
        timeout: float | None = None,  # noqa: ASYNC109 - it also bounds httpx's own timeouts
        idempotent: bool | None = None,
    ) -> ServiceResponse:
        """Call the service and return its 2xx or 4xx answer.

        Raises :class:`UpstreamUnavailable` (503) when it cannot be reached,
        no instance of it is known or every instance's circuit is open,
        :class:`GatewayTimeout` (504) when the whole call, retries included,
        takes longer than ``timeout`` (default: the client's), and
        :class:`BadGateway` (502) for a 5xx or 3xx answer, a broken connection
        or a 2xx body that is not JSON.

        ``idempotent`` says whether an attempt that may have reached the
        service can be repeated; None: decided by the method.
        """
        if not path.startswith("/"):
            raise ValueError("path must start with '/'")
        deadline = self.timeout if timeout is None else timeout
        if deadline <= 0:
            raise ValueError("timeout must be positive")
        method = method.upper()
        headers = {"Accept": "application/json"}
        if caller is not None:
            headers.update(caller.headers())
        call = _Call(
            method=method,
            path=path,
            params=params,
            json=json,
            headers=headers,
            request_id=caller.request_id if caller else None,
            deadline=deadline,
            retry_when_sent=method in IDEMPOTENT_METHODS if idempotent is None else idempotent,
        )
        self.retry_budget.deposit()
        try:
            # One deadline for the whole call: httpx's own timeouts apply per
            # phase (connect, each read), so a server that trickles bytes could
            # otherwise hold the caller far longer than ``timeout``; and
            # retries must not stretch it either.
            async with asyncio.timeout(deadline) as scope:
                call.scope = scope
                response = await self._attempts(call)
        except TimeoutError as exc:
            instance = call.in_flight.instance_id if call.in_flight else "(none: between attempts)"
            self._log(call, instance, "TimeoutError", "the call's deadline passed")
            raise GatewayTimeout(
                f"{self.name} did not answer within {deadline:g} s.", service=self.name
            ) from exc
        return self._answer(call, response)

    async def _attempts(self, call: _Call) -> httpx.Response:
        tried: set[str] = set()
        attempt = 0
        last: _Failure | None = None
        while True:
            chosen = self._choose(tried)
            if chosen is None:
                if last is not None:  # every breaker opened while waiting to retry
                    raise last.error from last.cause
                raise self._nowhere_to_send()
            endpoint, breaker = chosen
            tried.add(endpoint.instance_id)
            attempt += 1
            outcome = await self._attempt(call, endpoint, breaker)
            if isinstance(outcome, httpx.Response):
                return outcome
            last = outcome
            delay = self.backoff.delay(attempt).total_seconds()
            why_not = self._why_not_retry(call, outcome, attempt, delay)
            self._log(
                call,
                endpoint.instance_id,
                outcome.reason,
                f"not retried: {why_not}" if why_not else f"retrying in {delay * 1000:.0f} ms",
            )
            if why_not:
                raise outcome.error from outcome.cause
            await asyncio.sleep(delay)

    def _choose(self, tried: set[str]) -> tuple[Endpoint, CircuitBreaker] | None:
        """The instance of the next attempt (one not tried yet when there is one)."""
        allowed = [
            endpoint
            for endpoint in self.resolver.endpoints(self.name)
            if self.breakers.get(endpoint.instance_id).allows()
        ]
        untried = [endpoint for endpoint in allowed if endpoint.instance_id not in tried]
        candidates = untried or allowed
        while candidates:
            endpoint = self.balancer.choose(candidates)
            breaker = self.breakers.get(endpoint.instance_id)
            if breaker.acquire():
                return endpoint, breaker
            candidates = [other for other in candidates if other != endpoint]
        return None

    def _nowhere_to_send(self) -> UpstreamUnavailable:
        if not self.resolver.endpoints(self.name):
            logger.warning("%s: no healthy instance known", self.name)
            return UpstreamUnavailable(f"no healthy instance of {self.name}.", service=self.name)
        logger.warning("%s: the circuit of every instance is open", self.name)
        return UpstreamUnavailable(f"{self.name} is unavailable (circuit open).", service=self.name)

    def _why_not_retry(
        self, call: _Call, failure: _Failure, attempt: int, delay: float
    ) -> str | None:
        """Why the failed attempt is the last, or None to retry."""
        if attempt > self.retries:
            return "no retries left"
        if failure.sent and not call.retry_when_sent:
            return f"{call.method} may have been processed and is not idempotent"
        if call.remaining() <= delay:
            return "the deadline is too close"
        if not any(
            self.breakers.get(endpoint.instance_id).allows()
            for endpoint in self.resolver.endpoints(self.name)
        ):
            return "the circuit of every instance is open"
        # Last, so that the budget is only spent on retries that happen.
        if not self.retry_budget.try_withdraw():
            return "the retry budget is spent"
        return None

    async def _attempt(
        self, call: _Call, endpoint: Endpoint, breaker: CircuitBreaker
    ) -> httpx.Response | _Failure:
        """Send the call to ``endpoint`` once; count it and tell its breaker how it went."""
        outcome = "cancelled"
        try:
            result = await self._send(call, endpoint, breaker)
            outcome = _outcome(result)
            return result
        finally:
            if self.metrics is not None:
                self.metrics.attempts.labels(self.name, endpoint.instance_id, outcome).inc()

    async def _send(
        self, call: _Call, endpoint: Endpoint, breaker: CircuitBreaker
    ) -> httpx.Response | _Failure:
        # Never zero: httpx would fail at once and blame the instance, while
        # the deadline (about to fire) is what ends the call.
        remaining = max(call.remaining(), 0.001)
        call.in_flight = endpoint
        self.balancer.started(endpoint)
        try:
            response = await self._client.request(
                call.method,
                endpoint.base_url + call.path,
                params=call.params,
                json=call.json,
                headers=call.headers,
                timeout=httpx.Timeout(remaining, connect=min(remaining, self.connect_timeout)),
                follow_redirects=False,
            )
        except asyncio.CancelledError:
            # The deadline cut the attempt short: the instance did not answer
            # in time. Any other cancellation says nothing about the instance.
            assert call.scope is not None
            if call.scope.expired():
                breaker.record_failure()
            else:
                breaker.release()
            raise
        except _NOT_SENT_ERRORS as exc:
            breaker.record_failure()
            return _Failure(
                UpstreamUnavailable(f"{self.name} is unavailable.", service=self.name),
                sent=False,
                reason=type(exc).__name__,
                cause=exc,
            )
        except httpx.TimeoutException as exc:
            breaker.record_failure()
            return _Failure(
                GatewayTimeout(
                    f"{self.name} did not answer within {call.deadline:g} s.", service=self.name
                ),
                sent=True,
                reason=type(exc).__name__,
                cause=exc,
            )
        except httpx.HTTPError as exc:
            breaker.record_failure()
            return _Failure(
                BadGateway(f"{self.name} broke off the call before answering.", service=self.name),
                sent=True,
                reason=type(exc).__name__,
                cause=exc,
            )
        except BaseException:
            breaker.release()
            raise
        finally:
            call.in_flight = None
            self.balancer.finished(endpoint)
        if response.status_code >= 500:
            breaker.record_failure()
            return _Failure(
                BadGateway(
                    f"{self.name} failed to answer {call.method} {call.path} "
                    f"(status {response.status_code}).",
                    service=self.name,
                ),
                sent=True,
                reason=f"answered {response.status_code}",
            )
        # Any other answer, a 4xx included, shows the instance is alive.
        breaker.record_success()
        return response

    def _answer(self, call: _Call, response: httpx.Response) -> ServiceResponse:
        method, path, status = call.method, call.path, response.status_code
        if status < 200 or 300 <= status < 400:
            logger.warning(
                "%s %s %s answered %s (request_id=%s)",
                self.name,
                method,
                path,
                status,
                call.request_id,
            )
            raise BadGateway(
                f"{self.name} failed to answer {method} {path} (status {status}).",
                service=self.name,
            )
        body = _decode_json(response.content)
        if body is _NO_BODY:
            if 200 <= status < 300 and response.content.strip():
                logger.warning(
                    "%s %s %s answered %s with a body that is not JSON (request_id=%s)",
                    self.name,
                    method,
                    path,
                    status,
                    call.request_id,
                )
                raise BadGateway(
                    f"{self.name} sent an answer that cannot be read.", service=self.name
                )
            body = None
        return ServiceResponse(
            service=self.name, method=method, path=path, status_code=status, body=body
        )

    def _log(self, call: _Call, instance: str, what: str, then: str) -> None:
        logger.warning(
            "%s %s %s failed on instance %s: %s; %s (request_id=%s)",
            self.name,
            call.method,
            call.path,
            instance,
            what,
            then,
            call.request_id,
        )

    async def aclose(self) -> None:
        """Close the HTTP client if this ServiceClient created it."""
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> ServiceClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


def _outcome(result: httpx.Response | _Failure) -> str:
    """The ``outcome`` label of one attempt."""
    if isinstance(result, httpx.Response):
        return "ok" if result.status_code < 500 else "server_error"
    if not result.sent:
        return "not_sent"
    if isinstance(result.error, GatewayTimeout):
        return "timeout"
    return "server_error" if result.reason.startswith("answered") else "broken"


def _decode_json(content: bytes) -> Any:
    if not content.strip():
        return _NO_BODY
    try:
        return json.loads(content)
    except (ValueError, RecursionError):
        return _NO_BODY
