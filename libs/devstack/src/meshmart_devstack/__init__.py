"""Local launcher for the MeshMart suite: migrate, seed and run all five services.

It starts each service as its own process (``python -m <name>_service ...``)
and never imports a service.
"""
