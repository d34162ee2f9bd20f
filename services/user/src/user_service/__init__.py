"""MeshMart user service."""
