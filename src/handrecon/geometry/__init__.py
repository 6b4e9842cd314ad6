"""Geometry: rotations and the camera (one home each)."""
