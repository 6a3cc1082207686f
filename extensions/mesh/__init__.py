"""Mesh extension: texture stylization of 3D models."""
