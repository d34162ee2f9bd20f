"""Every error, expected or not, leaves as an RFC 9457 problem (application/problem+json)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from httpx import AsyncClient

from meshmart_common.errors import (
    PROBLEM_JSON,
    PROBLEM_TYPE_BASE,
    BadRequest,
    Problem,
    TooManyRequests,
    Unauthorized,
    document_problems,
    problem_response,
    problem_responses,
)
from meshmart_common.testing import assert_problem

# kind -> (status, title, detail)
DOMAIN_ERROR_CASES: dict[str, tuple[int, str, str]] = {
    "bad-request": (400, "Bad request", "The widget cannot be bent that way."),
    "unauthorized": (401, "Unauthorized", "The session is over."),
    "forbidden": (403, "Forbidden", "Only the owner may paint this widget."),
    "not-found": (404, "Not found", "Widget 42 does not exist."),
    "conflict": (409, "Conflict", "A widget with this name exists."),
    "validation-failed": (422, "Validation failed", "The widget breaks a rule."),
    "too-many-requests": (429, "Too many requests", "Slow down."),
    "service-unavailable": (503, "Service unavailable", "The paint shop is closed."),
}


@pytest.mark.parametrize("kind", sorted(DOMAIN_ERROR_CASES))
async def test_domain_error_renders_as_problem_json(client: AsyncClient, kind: str) -> None:
    status, title, detail = DOMAIN_ERROR_CASES[kind]
    response = await client.get(f"/api/v1/errors/{kind}", headers={"X-Request-ID": "req-1"})
    body = assert_problem(response, status)
    assert body["type"] == PROBLEM_TYPE_BASE + kind
    assert body["title"] == title
    assert body["detail"] == detail
    assert body["instance"] == f"/api/v1/errors/{kind}"
    assert body["request_id"] == "req-1"


async def test_validation_failed_carries_its_field_errors(client: AsyncClient) -> None:
    response = await client.get("/api/v1/errors/validation-failed")
    body = assert_problem(response, 422, field="name")
    assert body["errors"] == [
        {"field": "name", "location": "body", "message": "must not be reserved", "type": "reserved"}
    ]


async def test_too_many_requests_sends_retry_after(client: AsyncClient) -> None:
    response = await client.get("/api/v1/errors/too-many-requests")
    assert_problem(response, 429)
    assert response.headers["retry-after"] == "30"


async def test_unauthorized_domain_error_sends_www_authenticate(client: AsyncClient) -> None:
    response = await client.get("/api/v1/errors/unauthorized")
    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"


def test_unauthorized_keeps_www_authenticate_next_to_extra_headers() -> None:
    error = Unauthorized("expired", headers={"X-Reason": "expired"})
    assert error.headers == {"WWW-Authenticate": "Bearer", "X-Reason": "expired"}


def test_too_many_requests_never_asks_for_less_than_one_second() -> None:
    assert TooManyRequests(retry_after=0).headers == {"Retry-After": "1"}


def test_domain_error_without_detail_uses_its_title() -> None:
    error = BadRequest()
    assert error.detail == "Bad request"
    assert str(error) == "Bad request"
    assert error.errors is None


async def test_unexpected_exception_becomes_500_problem_and_is_logged(
    client: AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="meshmart.errors"):
        response = await client.get("/api/v1/errors/crash", headers={"X-Request-ID": "crash-7"})
    body = assert_problem(response, 500)
    assert body["type"] == PROBLEM_TYPE_BASE + "internal-error"
    assert body["request_id"] == "crash-7"
    assert body["instance"] == "/api/v1/errors/crash"
    assert "secret internals" not in response.text
    assert response.headers["x-request-id"] == "crash-7"
    logged = [r for r in caplog.records if r.name == "meshmart.errors"]
    assert len(logged) == 1
    assert "request_id=crash-7" in logged[0].getMessage()
    assert logged[0].exc_info is not None
    assert isinstance(logged[0].exc_info[1], RuntimeError)


async def test_body_validation_error_lists_field_errors(client: AsyncClient) -> None:
    response = await client.post("/api/v1/widgets", json={"name": ""})
    body = assert_problem(response, 422, field="name")
    assert body["type"] == PROBLEM_TYPE_BASE + "validation-failed"
    assert body["instance"] == "/api/v1/widgets"
    [error] = body["errors"]
    assert error["field"] == "name"
    assert error["location"] == "body"
    assert error["type"] == "string_too_short"
    assert "at least 1 character" in error["message"]


async def test_missing_body_field_and_bad_query_are_both_reported(client: AsyncClient) -> None:
    response = await client.post("/api/v1/widgets/write-then-fail?crash=maybe", json={})
    body = assert_problem(response, 422)
    locations = {(e["location"], e["field"], e["type"]) for e in body["errors"]}
    assert locations == {("query", "crash", "bool_parsing"), ("body", "name", "missing")}


async def test_path_parameter_of_wrong_type_is_422(client: AsyncClient) -> None:
    response = await client.get("/api/v1/widgets/abc")
    body = assert_problem(response, 422, field="widget_id")
    assert body["errors"][0]["location"] == "path"


async def test_unknown_path_is_404_problem(client: AsyncClient) -> None:
    response = await client.get("/api/v1/no/such/thing")
    body = assert_problem(response, 404)
    assert body["type"] == PROBLEM_TYPE_BASE + "not-found"
    assert body["title"] == "Not Found"
    assert body["instance"] == "/api/v1/no/such/thing"


async def test_wrong_method_is_405_problem_with_allow(client: AsyncClient) -> None:
    response = await client.delete("/api/v1/widgets/7")
    body = assert_problem(response, 405)
    assert body["type"] == PROBLEM_TYPE_BASE + "method-not-allowed"
    assert body["instance"] == "/api/v1/widgets/7"
    assert response.headers["allow"] == "GET"


@pytest.mark.parametrize(
    "content",
    [b'{"name": "half', b"\xff\xfe not utf-8", b"[1, 2", b"null"],
    ids=["truncated", "not-utf8", "broken-array", "null"],
)
async def test_malformed_json_body_is_422_problem(client: AsyncClient, content: bytes) -> None:
    response = await client.post(
        "/api/v1/widgets", content=content, headers={"Content-Type": "application/json"}
    )
    body = assert_problem(response, 422)
    assert body["errors"]
    assert all(e["location"] == "body" for e in body["errors"])


def test_problem_response_for_an_unusual_status_still_has_every_member() -> None:
    response = problem_response(599, instance="/x", extra={"hint": "h"})
    assert response.status_code == 599
    assert response.media_type == "application/problem+json"
    body: dict[str, Any] = json.loads(bytes(response.body))
    assert body == {
        "type": PROBLEM_TYPE_BASE + "error",
        "title": "Error",
        "status": 599,
        "detail": "Error",
        "instance": "/x",
        "hint": "h",
    }


# --- OpenAPI --------------------------------------------------------------------


async def test_every_rendered_problem_fits_the_published_problem_schema(
    client: AsyncClient,
) -> None:
    responses = [
        await client.post("/api/v1/widgets", json={"name": ""}),
        await client.get("/api/v1/errors/validation-failed"),
        await client.get("/api/v1/errors/too-many-requests"),
        await client.get("/api/v1/errors/crash"),
        await client.get("/api/v1/no/such/thing"),
    ]
    for response in responses:
        assert response.headers["content-type"].startswith(PROBLEM_JSON)
        problem = Problem.model_validate(response.json())
        assert problem.status == response.status_code


async def test_error_responses_are_documented_as_problem_json(client: AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    problem = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    create = schema["paths"]["/api/v1/widgets"]["post"]["responses"]
    assert create["422"]["content"] == problem
    assert schema["paths"]["/readyz"]["get"]["responses"]["503"]["content"] == problem
    components = schema["components"]["schemas"]
    assert components["Problem"]["required"] == ["type", "title", "status", "detail"]
    assert components["Problem"]["properties"]["errors"]["anyOf"][0]["items"] == {
        "$ref": "#/components/schemas/FieldError"
    }
    assert "HTTPValidationError" not in components
    assert "ValidationError" not in components


def test_problem_responses_describe_each_status_once_in_order() -> None:
    assert problem_responses(404, 401, 404, descriptions={404: "No such widget"}) == {
        401: {"description": "Unauthorized"},
        404: {"description": "No such widget"},
    }


def test_document_problems_replaces_the_media_type_of_errors_only() -> None:
    openapi: dict[str, Any] = {
        "paths": {
            "/w": {
                "parameters": [],
                "get": {
                    "responses": {
                        "200": {"content": {"application/json": {"schema": {}}}},
                        "404": {"content": {"application/json": {"schema": {}}}},
                    }
                },
            }
        },
    }
    document_problems(openapi)
    responses = openapi["paths"]["/w"]["get"]["responses"]
    assert responses["200"] == {"content": {"application/json": {"schema": {}}}}
    assert list(responses["404"]["content"]) == [PROBLEM_JSON]
    assert set(openapi["components"]["schemas"]) == {"Problem", "FieldError"}
