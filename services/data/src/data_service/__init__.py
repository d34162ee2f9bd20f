"""MeshMart data service."""
