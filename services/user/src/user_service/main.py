"""The user service app."""

from fastapi import FastAPI

from meshmart_common.app import create_app
from user_service.settings import Settings


def build_app(settings: Settings) -> FastAPI:
    """Create the user app for settings."""
    return create_app(
        settings,
        title="MeshMart user service",
        description="Accounts, tokens, profiles and addresses.",
    )


def app_factory() -> FastAPI:
    """Entry point for `uvicorn --factory user_service.main:app_factory`."""
    return build_app(Settings())
