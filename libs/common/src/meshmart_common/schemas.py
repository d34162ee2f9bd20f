"""Base classes of the API's request and response models."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class RequestBody(BaseModel):
    """Base of request bodies: unknown fields are an error (422), not silently dropped."""

    model_config = ConfigDict(extra="forbid")
