"""MeshMart product service."""
