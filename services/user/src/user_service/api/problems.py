"""OpenAPI documentation of the problem+json error responses."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from meshmart_common.errors import PROBLEM_JSON
from user_service.api.schemas import Problem

_PROBLEM_SCHEMA = Problem.model_json_schema()


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entries for errors with ``statuses`` (422 is always added)."""
    return {
        status: {
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_JSON: {"schema": _PROBLEM_SCHEMA}},
        }
        for status in sorted({*statuses, 422})
    }
