"""handrecon: self-supervised 3D hand reconstruction from a single RGB image (S2HAND method)."""

__version__ = "0.1.0"
