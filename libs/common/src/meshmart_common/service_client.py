"""Service-to-service REST calls: one small async client every service uses.

A :class:`ServiceClient` talks to one named service (``product``, ``trade``...)
at a base URL. Each call passes on the caller's bearer token and request id
(:class:`Caller`), runs under one deadline for the whole call, and turns every
way the call can fail into a :mod:`meshmart_common.errors` domain error that
renders as problem+json:

======================================  =========================================
what happened                           raised
======================================  =========================================
connection refused, DNS failure,        :class:`UpstreamUnavailable` (503):
connect timeout, no pooled connection   the request never reached the service
no answer within the deadline           :class:`GatewayTimeout` (504)
a 5xx answer, a redirect, a broken      :class:`BadGateway` (502)
connection, a 2xx body that is not
JSON (or not the expected shape)
======================================  =========================================

Every 4xx answer, 404 included, is *returned* as a :class:`ServiceResponse`:
only the caller knows whether "no such product" is an error for its own
client, and a 422 usually carries field errors worth passing on.

All of it goes through :meth:`ServiceClient.request`, the one place where
discovery, retries and circuit breaking will plug in later without changing
what callers see.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from meshmart_common.errors import DomainError, ServiceUnavailable

logger = logging.getLogger("meshmart.service_client")

DEFAULT_TIMEOUT_SECONDS = 5.0

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


class ServiceClient:
    """Async REST client of one named service.

    ``client`` is an ``httpx.AsyncClient`` to share (one connection pool per
    process, or a mock transport in tests); without one the ServiceClient makes
    its own and :meth:`aclose` closes it. ``timeout`` is the default deadline
    of a whole call in seconds; each call may set its own.
    """

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if httpx.URL(base_url).scheme not in ("http", "https"):
            raise ValueError(f"the base URL of {name} must be an http or https URL: {base_url!r}")
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._owns_client = client is None
        self._client = client if client is not None else httpx.AsyncClient()

    async def get(
        self,
        path: str,
        *,
        caller: Caller | None = None,
        params: dict[str, str | int] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - it also bounds httpx's own timeouts
    ) -> ServiceResponse:
        """GET ``path`` (relative to the base URL); see :meth:`request`."""
        return await self.request("GET", path, caller=caller, params=params, timeout=timeout)

    async def post(
        self,
        path: str,
        *,
        json: Any = None,
        caller: Caller | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - it also bounds httpx's own timeouts
    ) -> ServiceResponse:
        """POST a JSON body to ``path`` (relative to the base URL); see :meth:`request`."""
        return await self.request("POST", path, caller=caller, json=json, timeout=timeout)

    async def request(
        self,
        method: str,
        path: str,
        *,
        caller: Caller | None = None,
        params: dict[str, str | int] | None = None,
        json: Any = None,
        timeout: float | None = None,  # noqa: ASYNC109 - it also bounds httpx's own timeouts
    ) -> ServiceResponse:
        """Call the service and return its 2xx or 4xx answer.

        Raises :class:`UpstreamUnavailable` (503) when it cannot be reached,
        :class:`GatewayTimeout` (504) when the whole call takes longer than
        ``timeout`` (default: the client's), and :class:`BadGateway` (502) for
        a 5xx or 3xx answer, a broken connection or a 2xx body that is not JSON.
        """
        if not path.startswith("/"):
            raise ValueError("path must start with '/'")
        deadline = self.timeout if timeout is None else timeout
        if deadline <= 0:
            raise ValueError("timeout must be positive")
        headers = {"Accept": "application/json"}
        if caller is not None:
            headers.update(caller.headers())
        request_id = caller.request_id if caller else None
        try:
            # One deadline for the whole call: httpx's own timeouts apply per
            # phase (connect, each read), so a server that trickles bytes could
            # otherwise hold the caller far longer than ``timeout``.
            async with asyncio.timeout(deadline):
                response = await self._client.request(
                    method,
                    self.base_url + path,
                    params=params,
                    json=json,
                    headers=headers,
                    timeout=deadline,
                    follow_redirects=False,
                )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            self._log_failure(method, path, request_id, exc)
            raise UpstreamUnavailable(f"{self.name} is unavailable.", service=self.name) from exc
        except httpx.UnsupportedProtocol as exc:
            # A misconfigured base URL: the service is just as unreachable.
            self._log_failure(method, path, request_id, exc)
            raise UpstreamUnavailable(f"{self.name} is unavailable.", service=self.name) from exc
        except (TimeoutError, httpx.TimeoutException) as exc:
            self._log_failure(method, path, request_id, exc)
            raise GatewayTimeout(
                f"{self.name} did not answer within {deadline:g} s.", service=self.name
            ) from exc
        except httpx.TransportError as exc:
            self._log_failure(method, path, request_id, exc)
            raise BadGateway(
                f"{self.name} broke off the call before answering.", service=self.name
            ) from exc
        return self._answer(method, path, request_id, response)

    def _answer(
        self, method: str, path: str, request_id: str | None, response: httpx.Response
    ) -> ServiceResponse:
        status = response.status_code
        if status >= 500 or status < 200 or 300 <= status < 400:
            logger.warning(
                "%s %s %s answered %s (request_id=%s)", self.name, method, path, status, request_id
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
                    request_id,
                )
                raise BadGateway(
                    f"{self.name} sent an answer that cannot be read.", service=self.name
                )
            body = None
        return ServiceResponse(
            service=self.name, method=method, path=path, status_code=status, body=body
        )

    def _log_failure(
        self, method: str, path: str, request_id: str | None, exc: BaseException
    ) -> None:
        logger.warning(
            "%s %s %s failed: %s (request_id=%s)",
            self.name,
            method,
            path,
            type(exc).__name__,
            request_id,
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


def _decode_json(content: bytes) -> Any:
    if not content.strip():
        return _NO_BODY
    try:
        return json.loads(content)
    except (ValueError, RecursionError):
        return _NO_BODY
