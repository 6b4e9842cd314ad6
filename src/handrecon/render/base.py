"""Renderer interface, lighting and Lambert / spherical-harmonics shading shared by all backends.

Conventions (the same as :mod:`handrecon.geometry.camera`)
- Vertices are in the camera frame, OpenCV axes: x right, y down, z forward, metres.
- Pixels: OpenCV, pixel centres at integer coordinates; an image of width W spans u in [-0.5, W - 0.5].
- Faces are consistently oriented with outward normals ``n = (v1 - v0) x (v2 - v0)`` (counter-clockwise
  seen from outside, right-hand rule). Seen by the camera (looking down +z), a front face has n_z < 0.
- Lighting lives in the camera frame. ``Lighting.direction`` points from the surface TOWARDS the light
  and is normalised inside the renderer.

Lambert shading of albedo a at unit normal n:
    colour = a * (ambient + directional * max(0, n . l))                    (ambient + directional)
    colour = a * sum_k sh[k] * Y_k(n)                                       (spherical harmonics)
with Y_k the 9 real SH basis functions of order <= 2 (see :func:`sh_basis`); the SH coefficients are
those of the shading (irradiance) function itself, i.e. the Lambertian convolution is already folded in.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

# Real spherical harmonics, order <= 2, in the standard order (l, m) = (0,0), (1,-1), (1,0), (1,1),
# (2,-2), (2,-1), (2,0), (2,1), (2,2) i.e. 1, y, z, x, xy, yz, 3z^2 - 1, xz, x^2 - y^2.
SH_C0 = 0.28209479177387814  # 1 / (2 sqrt(pi))
SH_C1 = 0.4886025119029199  # sqrt(3 / (4 pi))
SH_C2 = 1.0925484305920792  # sqrt(15 / (4 pi))
SH_C3 = 0.31539156525252005  # sqrt(5 / (16 pi))
SH_C4 = 0.5462742152960396  # sqrt(15 / (16 pi))


@dataclass
class Lighting:
    """Per-sample lighting in the camera frame. All fields are (B, ...) tensors.

    ambient: (B, 3) ambient RGB intensity; directional: (B, 3) directional RGB intensity;
    direction: (B, 3) direction towards the light (any length, normalised by the renderer);
    sh: optional (B, 9, 3) order-2 SH shading coefficients per RGB channel; when given it replaces
    ambient + directional.
    """

    ambient: Tensor
    directional: Tensor
    direction: Tensor
    sh: Tensor | None = None

    @staticmethod
    def from_vector(v: Tensor) -> Lighting:
        """S2HAND's 11 lighting numbers per sample -> Lighting.

        v: (B, 11) = [ambient intensity, directional intensity, ambient colour (3),
        directional colour (3), direction (3)]. ambient = I_a * c_a, directional = I_d * c_d.
        """
        if v.ndim != 2 or v.shape[-1] != 11:
            raise ValueError(f"Lighting.from_vector expects a (B, 11) tensor, got shape {tuple(v.shape)}")
        return Lighting(
            ambient=v[:, 0:1] * v[:, 2:5],
            directional=v[:, 1:2] * v[:, 5:8],
            direction=v[:, 8:11],
        )

    @staticmethod
    def default(batch_size: int, device=None, dtype=torch.float32) -> Lighting:
        """White ambient 0.5 + white head light 0.5 along the optical axis (towards the camera: -z).

        A front-facing surface then renders with exactly its albedo.
        """
        ones = torch.ones(batch_size, 3, device=device, dtype=dtype)
        direction = torch.zeros(batch_size, 3, device=device, dtype=dtype)
        direction[:, 2] = -1.0
        return Lighting(ambient=0.5 * ones, directional=0.5 * ones, direction=direction)

    @property
    def batch_size(self) -> int:
        return self.ambient.shape[0]

    def to(self, device=None, dtype=None) -> Lighting:
        def cv(t):
            return None if t is None else t.to(device=device, dtype=dtype)

        return Lighting(cv(self.ambient), cv(self.directional), cv(self.direction), cv(self.sh))

    def validate(self, batch_size: int) -> None:
        for name in ("ambient", "directional", "direction"):
            t = getattr(self, name)
            if t.shape != (batch_size, 3):
                raise ValueError(f"Lighting.{name} must be ({batch_size}, 3), got {tuple(t.shape)}")
        if self.sh is not None and self.sh.shape != (batch_size, 9, 3):
            raise ValueError(f"Lighting.sh must be ({batch_size}, 9, 3), got {tuple(self.sh.shape)}")


@dataclass
class RenderOutput:
    """rgb: (B, H, W, 3) shaded colour composited over the background; silhouette: (B, H, W) soft
    coverage in [0, 1]; depth: (B, H, W) z (metres) of the nearest surface, 0 where there is none."""

    rgb: Tensor
    silhouette: Tensor
    depth: Tensor


@dataclass
class UVTexture:
    """An albedo texture map and a mesh's UV map, given to a renderer in place of per-vertex colours.

    maps: (B, Ht, Wt, 3) RGB albedo in [0, 1], row 0 = the top of the image (as stored in a PNG);
    verts_uvs: (Vt, 2) UV coordinates in [0, 1], v = 0 at the bottom of the image (OBJ / Blender /
    pytorch3d convention); faces_uvs: (F, 3) the UV vertex of each face corner (the mesh's faces index
    the 3D vertices, these the UV vertices, so seams are allowed). Texels are sampled bilinearly with
    texel centres at ((i + 0.5) / Wt, 1 - (j + 0.5) / Ht) and the border texels extended
    (:func:`sample_uv`); gradients flow to the maps and, through the UVs' barycentric
    interpolation, to the vertices.
    """

    maps: Tensor
    verts_uvs: Tensor
    faces_uvs: Tensor

    def corner_uvs(self) -> Tensor:
        """(F, 3, 2) UV of each face corner."""
        return self.verts_uvs[self.faces_uvs.long()]


def sample_uv(maps: Tensor, batch: Tensor, uv: Tensor) -> Tensor:
    """Bilinear lookup: maps (B, Ht, Wt, C), batch (P,) the map of each point, uv (P, 2) -> (P, C).

    Texel (i, j) (column i, row j from the top) has its centre at u = (i + 0.5) / Wt,
    v = 1 - (j + 0.5) / Ht; outside the centres the border texels extend (clamp). Differentiable in
    maps and uv (like ``grid_sample(align_corners=False, padding_mode='border')``, but each point may
    read a different map)."""
    B, Ht, Wt, C = maps.shape
    x = uv[:, 0] * Wt - 0.5
    y = (1.0 - uv[:, 1]) * Ht - 0.5
    x0, y0 = torch.floor(x.detach()), torch.floor(y.detach())
    wx, wy = (x - x0)[:, None], (y - y0)[:, None]
    flat = maps.reshape(B * Ht * Wt, C)
    base = batch.long() * (Ht * Wt)
    xi0, xi1 = x0.long().clamp(0, Wt - 1), (x0.long() + 1).clamp(0, Wt - 1)
    yi0, yi1 = y0.long().clamp(0, Ht - 1), (y0.long() + 1).clamp(0, Ht - 1)

    def at(yi, xi):
        return flat.index_select(0, base + yi * Wt + xi)

    top = at(yi0, xi0) * (1.0 - wx) + at(yi0, xi1) * wx
    bottom = at(yi1, xi0) * (1.0 - wx) + at(yi1, xi1) * wx
    return top * (1.0 - wy) + bottom * wy


# ------------------------------------------------------------------------------------ geometry


def flat_corners(verts: Tensor, faces: Tensor) -> list[Tensor]:
    """Rows of each face corner k in the flat (B V, 3) vertices: 3 x (B F,). Gathers and scatters
    along dim 0 of the flat array are several times faster on CPU than fancy indexing along dim 1."""
    B, V, _ = verts.shape
    offset = torch.arange(B, device=verts.device)[:, None] * V  # (B, 1)
    return [(faces[:, k][None] + offset).reshape(-1) for k in range(3)]


def _face_normals_flat(verts: Tensor, corners: list[Tensor]) -> Tensor:
    flat = verts.reshape(-1, 3)
    v0, v1, v2 = (flat.index_select(0, c) for c in corners)
    return torch.linalg.cross(v1 - v0, v2 - v0, dim=-1)  # (B F, 3)


def face_normals(verts: Tensor, faces: Tensor, normalize: bool = True) -> Tensor:
    """verts (B, V, 3), faces (F, 3) -> (B, F, 3) normals (v1 - v0) x (v2 - v0).

    Unnormalised, the length is twice the face area (area weighting for vertex normals).
    """
    n = _face_normals_flat(verts, flat_corners(verts, faces)).view(verts.shape[0], -1, 3)
    return F.normalize(n, dim=-1, eps=1e-12) if normalize else n


def vertex_normals(verts: Tensor, faces: Tensor) -> Tensor:
    """Area-weighted unit vertex normals: verts (B, V, 3), faces (F, 3) -> (B, V, 3)."""
    B, V, _ = verts.shape
    corners = flat_corners(verts, faces)
    fn = _face_normals_flat(verts, corners)  # (B F, 3)
    vn = verts.new_zeros(B * V, 3)
    for c in corners:
        vn = vn.index_add(0, c, fn)
    return F.normalize(vn.view(B, V, 3), dim=-1, eps=1e-12)


# ------------------------------------------------------------------------------------ shading


def sh_basis(normals: Tensor) -> Tensor:
    """Real SH basis of order <= 2 at unit normals (..., 3) -> (..., 9), order as in the module doc."""
    x, y, z = normals.unbind(-1)
    return torch.stack(
        [
            torch.full_like(x, SH_C0),
            SH_C1 * y,
            SH_C1 * z,
            SH_C1 * x,
            SH_C2 * x * y,
            SH_C2 * y * z,
            SH_C3 * (3.0 * z * z - 1.0),
            SH_C2 * x * z,
            SH_C4 * (x * x - y * y),
        ],
        -1,
    )


def shading_factor(normals: Tensor, lighting: Lighting) -> Tensor:
    """Lambert shading factor per point: normals (B, N, 3) unit -> (B, N, 3) RGB multiplier of the albedo."""
    if lighting.sh is not None:
        return sh_basis(normals) @ lighting.sh  # (B, N, 9) @ (B, 9, 3)
    l = F.normalize(lighting.direction, dim=-1, eps=1e-12)  # (B, 3)
    cos = torch.relu((normals * l[:, None, :]).sum(-1, keepdim=True))  # (B, N, 1)
    return lighting.ambient[:, None, :] + lighting.directional[:, None, :] * cos


def shade(albedo: Tensor, normals: Tensor, lighting: Lighting) -> Tensor:
    """Lambert: albedo (B, N, 3), unit normals (B, N, 3) -> shaded RGB (B, N, 3)."""
    return albedo * shading_factor(normals, lighting)


# ------------------------------------------------------------------------------------ interface


def parse_image_size(image_size) -> tuple[int, int]:
    if isinstance(image_size, int):
        return image_size, image_size
    try:
        H, W = (int(s) for s in image_size)
    except (TypeError, ValueError) as e:
        raise ValueError(f"image_size must be an int or (H, W), got {image_size!r}") from e
    if H <= 0 or W <= 0:
        raise ValueError(f"image_size must be positive, got {(H, W)}")
    return H, W


def check_inputs(verts, faces, colors, K, H, W, lighting, background) -> None:
    """Clear errors for malformed renderer inputs."""
    if verts.ndim != 3 or verts.shape[-1] != 3:
        raise ValueError(f"renderer: verts must be (B, V, 3), got {tuple(verts.shape)}")
    B, V, _ = verts.shape
    if faces.ndim != 2 or faces.shape[-1] != 3 or faces.dtype not in (torch.int64, torch.int32):
        raise ValueError(
            f"renderer: faces must be an integer (F, 3) tensor, got {tuple(faces.shape)} {faces.dtype}"
        )
    if faces.numel() and (int(faces.min()) < 0 or int(faces.max()) >= V):
        raise ValueError(f"renderer: faces index vertices outside [0, {V})")
    if isinstance(colors, UVTexture):
        m, vt, ft = colors.maps, colors.verts_uvs, colors.faces_uvs
        if m.ndim != 4 or m.shape[0] != B or m.shape[-1] != 3:
            raise ValueError(f"renderer: UVTexture.maps must be (B, Ht, Wt, 3) with B = {B}, got {tuple(m.shape)}")
        if vt.ndim != 2 or vt.shape[-1] != 2:
            raise ValueError(f"renderer: UVTexture.verts_uvs must be (Vt, 2), got {tuple(vt.shape)}")
        if ft.shape != faces.shape or ft.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"renderer: UVTexture.faces_uvs must be an integer {tuple(faces.shape)} tensor (one UV "
                             f"index per face corner), got {tuple(ft.shape)} {ft.dtype}")
        if ft.numel() and (int(ft.min()) < 0 or int(ft.max()) >= vt.shape[0]):
            raise ValueError(f"renderer: UVTexture.faces_uvs index UV vertices outside [0, {vt.shape[0]})")
    elif colors.shape != (B, V, 3):
        raise ValueError(f"renderer: colors must be (B, V, 3) = {(B, V, 3)} or a UVTexture, got {tuple(colors.shape)}")
    if K.shape != (B, 3, 3):
        raise ValueError(f"renderer: K must be (B, 3, 3) = {(B, 3, 3)}, got {tuple(K.shape)}")
    if lighting is not None:
        lighting.validate(B)
    if background is not None and background.shape != (B, H, W, 3):
        raise ValueError(
            f"renderer: background must be (B, H, W, 3) = {(B, H, W, 3)}, got {tuple(background.shape)}"
        )


class Renderer(torch.nn.Module):
    """Base class of the renderers. Subclasses implement :meth:`forward`.

    ``differentiable``: whether gradients flow from the images to verts, colours and lighting
    (training's rendered loss terms need it; inference overlays do not)."""

    differentiable: bool = True

    def forward(
        self,
        verts: Tensor,
        faces: Tensor,
        colors: Tensor | UVTexture,
        K: Tensor,
        image_size: int | tuple[int, int],
        lighting: Lighting | None = None,
        background: Tensor | None = None,
    ) -> RenderOutput:
        """verts (B, V, 3) camera frame; faces (F, 3); colors (B, V, 3) albedo in [0, 1] or a
        :class:`UVTexture` (an albedo map sampled through a UV map); K (B, 3, 3);
        image_size int or (H, W); lighting (None: :meth:`Lighting.default`); background (B, H, W, 3)
        image to composite over (None: the backend's constant background colour)."""
        raise NotImplementedError
