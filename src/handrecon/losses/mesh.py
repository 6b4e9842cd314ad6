"""Mesh operators for the losses: the cotangent Laplacian of a triangle mesh (the ``triangle`` term).

As in the S2HAND reference (examples/utils/laplacianloss.py, after CMR / gptoolbox), for vertex i with
neighbours N(i)::

    (L x)_i = sum_{j in N(i)} w_ij (x_j - x_i),    w_ij = (cot a_ij + cot b_ij) / 2

where a_ij and b_ij are the angles opposite the edge (i, j) in its two triangles (one on a boundary
edge). There is no area (mass) normalisation. The weights are computed from the predicted mesh at
every call and treated as constants (no gradient flows through them, as in the reference, which
builds them in numpy); by default, as in the reference, the batch's first mesh gives the weights of
the whole batch (``weights_from='first'``), or each mesh its own (``'each'``).

L annihilates translations, and since cotangents do not change under rotation and uniform scaling,
L(s R x + t) = s R L(x). On a flat mesh L x = 0 at every interior vertex (the cotangent Laplacian of
a linear function vanishes).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

WEIGHTS_FROM = ("first", "each")


def _faces_tensor(faces) -> torch.Tensor:
    if torch.is_tensor(faces):
        integer = not (faces.dtype.is_floating_point or faces.dtype.is_complex or faces.dtype == torch.bool)
        dtype, shape = faces.dtype, tuple(faces.shape)
    else:
        faces = np.asarray(faces)
        integer = faces.dtype.kind in "iu"
        dtype, shape = faces.dtype, faces.shape
    if len(shape) != 2 or shape[1] != 3:
        raise ValueError(f"faces must have shape (F, 3), got {shape}")
    if not integer:
        raise ValueError(f"faces must hold integer vertex indices, got dtype {dtype}")
    return faces.detach().cpu().long() if torch.is_tensor(faces) else torch.from_numpy(faces.astype(np.int64))


def cotangent_weights(verts: torch.Tensor, faces: torch.Tensor, eps: float = 1e-20) -> torch.Tensor:
    """(B, F, 3) half-cotangents of verts (B, V, 3) for faces (F, 3): column k is cot(angle at corner
    k) / 2, the weight that face gives to the edge opposite corner k. A degenerate face (zero area)
    gives 0 instead of an infinite weight."""
    v = verts[:, faces]  # (B, F, 3 corners, 3)
    out = []
    for k in range(3):
        p, a, b = v[:, :, k], v[:, :, (k + 1) % 3], v[:, :, (k + 2) % 3]
        e1, e2 = a - p, b - p
        dot = (e1 * e2).sum(-1)
        cross = torch.linalg.vector_norm(torch.linalg.cross(e1, e2, dim=-1), dim=-1)  # 2 x area
        ok = cross > eps
        out.append(torch.where(ok, dot / torch.where(ok, cross, torch.ones_like(cross)), torch.zeros_like(dot)) / 2)
    return torch.stack(out, -1)


class CotangentLaplacian(nn.Module):
    """The reference's cotangent Laplacian, applied by index arithmetic (no dense V x V).

    Args:
        faces: (F, 3) integer vertex indices (tensor or array).
        num_verts: V, the number of vertices (vertices no face uses map to 0).
        weights_from: 'first' (the reference: the batch's first mesh gives every sample's weights)
            or 'each' (every mesh its own weights).

    ``forward(verts)``: verts (B, V, 3) or (V, 3) -> L verts of the same shape. Face indices are a
    buffer, so the operator moves with ``.to(device)`` together with the module that owns it.
    """

    def __init__(self, faces, num_verts: int, weights_from: str = "first"):
        super().__init__()
        num_verts = int(num_verts)
        if num_verts <= 0:
            raise ValueError(f"num_verts must be positive, got {num_verts}")
        if weights_from not in WEIGHTS_FROM:
            raise ValueError(f"laplacian weights_from must be one of {WEIGHTS_FROM}, got {weights_from!r}")
        faces = _faces_tensor(faces)
        if faces.numel() and (faces.min() < 0 or faces.max() >= num_verts):
            raise ValueError(f"faces index vertices in [{int(faces.min())}, {int(faces.max())}] but num_verts={num_verts}")
        self.num_verts, self.weights_from = num_verts, weights_from
        self.register_buffer("faces", faces, persistent=False)
        # edge opposite corner k: (k+1, k+2); both directions for the scatter
        src = torch.cat([faces[:, [1, 2, 0]], faces[:, [2, 0, 1]]], 1).reshape(-1)  # (6F,) vertex i
        dst = torch.cat([faces[:, [2, 0, 1]], faces[:, [1, 2, 0]]], 1).reshape(-1)  # (6F,) its neighbour j
        self.register_buffer("src", src, persistent=False)
        self.register_buffer("dst", dst, persistent=False)

    def forward(self, verts: torch.Tensor) -> torch.Tensor:
        squeeze = verts.dim() == 2
        if squeeze:
            verts = verts.unsqueeze(0)
        if verts.dim() != 3 or verts.shape[1] != self.num_verts or verts.shape[2] != 3:
            raise ValueError(f"CotangentLaplacian built for {self.num_verts} vertices expects verts "
                             f"(B, {self.num_verts}, 3), got {tuple(verts.shape)}")
        with torch.no_grad():
            source = verts[:1] if self.weights_from == "first" else verts
            w = cotangent_weights(source.detach(), self.faces)  # (B or 1, F, 3)
            w = torch.cat([w, w], 2).reshape(w.shape[0], -1, 1)  # (., 6F, 1) in the order of src / dst
        diff = verts.index_select(1, self.dst) - verts.index_select(1, self.src)  # (B, 6F, 3) x_j - x_i
        lap = verts.new_zeros(verts.shape).index_add(1, self.src, w.to(verts.dtype) * diff)
        return lap.squeeze(0) if squeeze else lap
