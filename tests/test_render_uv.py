"""UV texture maps in the renderers (UVTexture, sample_uv): closed-form colours and gradients."""

from __future__ import annotations

import pytest
import torch

from handrecon.render import SoftRasterizer, UVTexture, ZBufferRenderer, sample_uv
from handrecon.render.zbuffer import numba_available

H = W = 32
K = torch.tensor([[[40.0, 0.0, 15.5], [0.0, 40.0, 15.5], [0.0, 0.0, 1.0]]])
T = 4


def ramp_map(B=1):
    """A T x T map whose texel (column i, row j from the top) is (u, v, 0.25) at its centre: bilinear
    sampling anywhere between the outer texel centres returns (u, v, 0.25) exactly."""
    c = (torch.arange(T, dtype=torch.float64) + 0.5) / T
    u = c[None, :].expand(T, T)
    v = (1.0 - c)[:, None].expand(T, T)
    return torch.stack([u, v, torch.full_like(u, 0.25)], -1)[None].expand(B, T, T, 3).float().contiguous()


def test_sample_uv_texel_centres_midpoints_and_gradient():
    maps = torch.rand(2, 3, 5, 4, dtype=torch.float64, requires_grad=True)
    # the centre of texel (column 2, row 1) of map 1, and the midpoint between columns 0 and 1 of row 0 of map 0
    uv = torch.tensor([[2.5 / 5, 1 - 1.5 / 3], [1.0 / 5, 1 - 0.5 / 3]], dtype=torch.float64)
    out = sample_uv(maps, torch.tensor([1, 0]), uv)
    torch.testing.assert_close(out[0], maps[1, 1, 2])
    torch.testing.assert_close(out[1], 0.5 * (maps[0, 0, 0] + maps[0, 0, 1]))
    out.sum().backward()
    g = maps.grad
    assert g[1, 1, 2].eq(1).all() and g[0, 0, 0].eq(0.5).all() and g[0, 0, 1].eq(0.5).all()
    assert g.sum() == 2 * 4  # nothing else read
    # border texels extend beyond the outer centres
    edge = sample_uv(maps.detach(), torch.tensor([0]), torch.tensor([[0.0, 1.0]], dtype=torch.float64))
    torch.testing.assert_close(edge[0], maps[0, 0, 0].detach())
    assert torch.autograd.gradcheck(lambda x: sample_uv(maps.detach(), torch.tensor([1, 0]), x),
                                    (uv + 0.013).requires_grad_())


def _triangle():
    """One front-facing triangle at depth 1 (fronto-parallel: UVs are affine on screen), its
    corners' pixel positions and UVs."""
    px = torch.tensor([[4.0, 3.0], [27.0, 6.0], [9.0, 28.0]])
    verts = torch.cat([(px - 15.5) / 40.0, torch.ones(3, 1)], 1)[None]  # z = 1
    n = torch.linalg.cross(verts[0, 1] - verts[0, 0], verts[0, 2] - verts[0, 0])
    faces = torch.tensor([[0, 1, 2]] if n[2] < 0 else [[0, 2, 1]])
    uvs = torch.tensor([[0.2, 0.3], [0.8, 0.25], [0.4, 0.8]])
    return verts, faces, px, uvs


def _expected(px, uvs):
    """(u, v, 0.25) at every pixel centre strictly inside the triangle, and the inside mask."""
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    p = torch.stack([xs, ys], -1)
    a, b, c = px.double()
    m = torch.stack([b - a, c - a], 1)  # columns
    lam12 = torch.linalg.solve(m, (p - a).reshape(-1, 2).T).T.reshape(H, W, 2)
    lam = torch.cat([1 - lam12.sum(-1, keepdim=True), lam12], -1)
    inside = (lam > 0.02).all(-1)
    uv = lam @ uvs.double()
    return torch.cat([uv, torch.full((H, W, 1), 0.25, dtype=torch.float64)], -1), inside


RENDERERS = [("soft", "gouraud"), ("soft", "phong"), ("soft", "flat"), ("zbuffer", "torch")] + (
    [("zbuffer", "numba")] if numba_available() else [])


@pytest.mark.parametrize("kind,mode", RENDERERS)
def test_known_map_on_a_known_triangle_gives_the_known_colour(kind, mode):
    verts, faces, px, uvs = _triangle()
    tex = UVTexture(ramp_map(), uvs, torch.tensor([[0, 1, 2]]) if faces[0, 1] == 1 else torch.tensor([[0, 2, 1]]))
    r = SoftRasterizer(shading=mode) if kind == "soft" else ZBufferRenderer(backend=mode)
    out = r(verts, faces, tex, K, (H, W))  # default lighting: a front-facing surface shows its albedo
    want, inside = _expected(px, uvs)
    assert inside.sum() > 150
    torch.testing.assert_close(out.rgb[0][inside].double(), want[inside], atol=2e-5, rtol=0)
    assert (out.silhouette[0][inside] == 1).all()


def test_texture_map_and_vertices_get_gradients():
    verts, faces, px, uvs = _triangle()
    maps = ramp_map().clone().requires_grad_()
    verts = verts.clone().requires_grad_()
    out = SoftRasterizer()(verts, faces, UVTexture(maps, uvs, faces.clone()), K, (H, W))
    (out.rgb[..., 0] * torch.linspace(0, 1, W)).sum().backward()
    assert maps.grad[..., 0].abs().sum() > 0 and maps.grad[..., 1:].abs().sum() == 0
    assert verts.grad.abs().sum() > 0 and torch.isfinite(verts.grad).all()


def test_uv_seams_are_per_face():
    """Two faces sharing an edge but reading different texels: each pixel shows its own face's texel."""
    verts = torch.tensor([[[-0.3, -0.3, 1.0], [0.3, -0.3, 1.0], [0.3, 0.3, 1.0], [-0.3, 0.3, 1.0]]])
    faces = torch.tensor([[0, 2, 1], [0, 3, 2]])
    maps = torch.zeros(1, 1, 2, 3)
    maps[0, 0, 0] = torch.tensor([1.0, 0.0, 0.0])
    maps[0, 0, 1] = torch.tensor([0.0, 0.0, 1.0])
    vuv = torch.tensor([[0.25, 0.5], [0.75, 0.5]])  # the centres of the two texels
    fuv = torch.tensor([[0, 0, 0], [1, 1, 1]])
    for r in (SoftRasterizer(), ZBufferRenderer(backend="torch")):
        rgb = r(verts, faces, UVTexture(maps, vuv, fuv), K, (H, W)).rgb[0]
        # face 0 (0, 2, 1) is the upper-right half in the image (rows below the diagonal: y down), face 1 the lower-left
        torch.testing.assert_close(rgb[10, 12], torch.tensor([1.0, 0.0, 0.0]), atol=1e-5, rtol=0)
        torch.testing.assert_close(rgb[22, 20], torch.tensor([0.0, 0.0, 1.0]), atol=1e-5, rtol=0)


def test_bad_uv_texture_is_a_clear_error():
    verts, faces, px, uvs = _triangle()
    with pytest.raises(ValueError, match="faces_uvs must be an integer"):
        SoftRasterizer()(verts, faces, UVTexture(ramp_map(), uvs, torch.zeros(2, 3, dtype=torch.long)), K, (H, W))
    with pytest.raises(ValueError, match="UVTexture.maps must be"):
        SoftRasterizer()(verts, faces, UVTexture(ramp_map(2), uvs, faces), K, (H, W))
    with pytest.raises(ValueError, match="outside"):
        ZBufferRenderer()(verts, faces, UVTexture(ramp_map(), uvs, faces + 5), K, (H, W))
