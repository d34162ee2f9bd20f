"""MeshMart order service."""
