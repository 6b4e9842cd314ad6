"""Differentiable mesh renderers behind one interface (config group ``renderer``).

    out = renderer(verts, faces, colors, K, image_size, lighting=None, background=None)
    out.rgb (B, H, W, 3), out.silhouette (B, H, W), out.depth (B, H, W)

``colors``: (B, V, 3) per-vertex albedo, or a :class:`UVTexture` (albedo maps sampled through the
mesh's UV map, per pixel, in every backend).

Backends: ``soft`` (:class:`SoftRasterizer`, pure PyTorch, default) and ``pytorch3d``
(:class:`PyTorch3DRenderer`, only when pytorch3d is installed) are differentiable; ``zbuffer``
(:class:`ZBufferRenderer`, hard edges, no gradients; tensor ops or a numba loop on CPU) draws
inference overlays.
"""

from __future__ import annotations

from .base import (
    Lighting,
    Renderer,
    RenderOutput,
    UVTexture,
    face_normals,
    sample_uv,
    sh_basis,
    shade,
    shading_factor,
    vertex_normals,
)
from .pytorch3d_backend import PyTorch3DRenderer, pytorch3d_available
from .soft import SoftRasterizer
from .zbuffer import ZBufferRenderer

BACKENDS = {"soft": SoftRasterizer, "pytorch3d": PyTorch3DRenderer, "zbuffer": ZBufferRenderer}


def available_backends() -> list[str]:
    """Names of the renderer backends usable in this environment (``soft`` always)."""
    names = ["soft", "zbuffer"]
    if pytorch3d_available():
        names.append("pytorch3d")
    return names


def build_renderer(name: str = "soft", **kwargs) -> Renderer:
    """Renderer by backend name (the Hydra configs instantiate the classes directly)."""
    if name not in BACKENDS:
        raise ValueError(f"renderer: unknown backend {name!r}; expected one of {sorted(BACKENDS)}")
    return BACKENDS[name](**kwargs)


__all__ = [
    "Lighting",
    "RenderOutput",
    "UVTexture",
    "sample_uv",
    "Renderer",
    "SoftRasterizer",
    "ZBufferRenderer",
    "PyTorch3DRenderer",
    "available_backends",
    "build_renderer",
    "face_normals",
    "vertex_normals",
    "shade",
    "shading_factor",
    "sh_basis",
]
