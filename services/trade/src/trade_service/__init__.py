"""MeshMart trade service."""
