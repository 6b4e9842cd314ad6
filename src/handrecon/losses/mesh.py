"""Mesh operators for the losses: the uniform (umbrella) Laplacian of a triangle mesh.

The operator is built once from the faces and works for any vertex count (MANO's 778 vertices,
a subdivided MANO, a toy grid in the tests). For vertex i with neighbours N(i) (the vertices it
shares an edge with):

    (L x)_i = x_i - (1 / |N(i)|) * sum_{j in N(i)} x_j        (a vertex with no edge: 0)

i.e. L = I - D^-1 A with A the edge adjacency and D the degrees. L is linear, annihilates
translations (every row sums to 0) and commutes with rotations and scalings of the mesh:
L(s R x + t) = s R L(x).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def edges_from_faces(faces) -> torch.Tensor:
    """Unique undirected edges (E, 2) (int64, i < j per row) of a triangle mesh faces (F, 3)."""
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
    faces = faces.detach().cpu().long() if torch.is_tensor(faces) else torch.from_numpy(faces.astype(np.int64))
    pairs = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], dim=0)  # (3F, 2)
    pairs = torch.sort(pairs, dim=1).values
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]  # degenerate faces repeat a vertex: no self-edges
    return torch.unique(pairs, dim=0)


class UniformLaplacian(nn.Module):
    """The uniform Laplacian L = I - D^-1 A of a mesh, applied by index arithmetic (no dense V x V).

    Args:
        faces: (F, 3) integer vertex indices (tensor or array).
        num_verts: V, the number of vertices the operator acts on (vertices that no face uses are
            isolated and map to 0).

    ``forward(verts)``: verts (B, V, C) or (V, C) -> (L verts) of the same shape. Indices are
    buffers, so the operator moves with ``.to(device)`` together with the module that owns it.
    """

    def __init__(self, faces, num_verts: int):
        super().__init__()
        num_verts = int(num_verts)
        if num_verts <= 0:
            raise ValueError(f"num_verts must be positive, got {num_verts}")
        edges = edges_from_faces(faces)  # (E, 2)
        if edges.numel() and (edges.min() < 0 or edges.max() >= num_verts):
            raise ValueError(
                f"faces index vertices in [{int(edges.min())}, {int(edges.max())}] but num_verts={num_verts}"
            )
        src = torch.cat([edges[:, 0], edges[:, 1]])  # (2E,) neighbour j ...
        dst = torch.cat([edges[:, 1], edges[:, 0]])  # (2E,) ... of vertex i
        degree = torch.zeros(num_verts, dtype=torch.float32).index_add_(0, dst, torch.ones(dst.shape[0]))
        self.num_verts = num_verts
        self.register_buffer("src", src, persistent=False)
        self.register_buffer("dst", dst, persistent=False)
        self.register_buffer("degree", degree, persistent=False)  # (V,)

    @property
    def num_edges(self) -> int:
        return int(self.src.shape[0] // 2)

    def forward(self, verts: torch.Tensor) -> torch.Tensor:
        squeeze = verts.dim() == 2
        if squeeze:
            verts = verts.unsqueeze(0)
        if verts.dim() != 3 or verts.shape[1] != self.num_verts:
            raise ValueError(
                f"UniformLaplacian built for {self.num_verts} vertices expects verts (B, {self.num_verts}, C), "
                f"got {tuple(verts.shape)}"
            )
        neighbours = verts.index_select(1, self.src)  # (B, 2E, C)
        nbr_sum = verts.new_zeros(verts.shape).index_add(1, self.dst, neighbours)  # (B, V, C)
        degree = self.degree.to(verts.dtype)[None, :, None]  # (1, V, 1)
        lap = verts - nbr_sum / degree.clamp(min=1.0)
        lap = torch.where(degree > 0, lap, torch.zeros_like(lap))  # isolated vertices: 0
        return lap.squeeze(0) if squeeze else lap

    def to_sparse(self) -> torch.Tensor:
        """L as a sparse COO (V, V) matrix (float32), e.g. for inspection or ``torch.sparse.mm``."""
        v = self.num_verts
        deg = self.degree
        has = deg > 0
        diag = torch.arange(v, device=deg.device)[has]
        rows = torch.cat([diag, self.dst])
        cols = torch.cat([diag, self.src])
        vals = torch.cat([torch.ones(int(has.sum()), device=deg.device), -1.0 / deg[self.dst]])
        return torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, (v, v), check_invariants=True).coalesce()
