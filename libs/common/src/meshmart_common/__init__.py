"""Shared platform library for MeshMart services.

Every service builds its FastAPI app with :func:`meshmart_common.app.create_app`
and extends :class:`meshmart_common.settings.ServiceSettings`.
"""

__version__ = "0.1.0"
