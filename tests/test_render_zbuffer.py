"""The hard z-buffer renderer of inference overlays: exact coverage, nearest surface, culling, and
agreement with the differentiable renderer it stands in for."""

from __future__ import annotations

import pytest
import torch

from handrecon.render import Lighting, SoftRasterizer
from handrecon.render.zbuffer import ZBufferRenderer
from test_render import QUAD_FACES, intrinsics, lift, quad, sphere


@pytest.fixture(params=["torch", "numba"])
def zbuf(request):
    """ZBufferRenderer with each backend: the tests below hold for both."""

    def make(**kw):
        return ZBufferRenderer(backend=request.param, **kw)

    return make


def test_triangle_covers_exactly_the_pixel_centres_inside_with_plane_depth(zbuf):
    K = intrinsics(120.0, 31.5, 31.5)
    uv = torch.tensor([[8.3, 6.6], [56.3, 6.6], [8.3, 54.6]])  # right triangle, legs 48 px
    z = torch.tensor([0.8, 1.1, 1.4])  # a tilted plane
    v = lift(uv, z, K)[None]
    faces = torch.tensor([[0, 1, 2]])
    out = zbuf(cull_backfaces=False)(v, faces, torch.full((1, 3, 3), 0.5), K, 64)
    ys, xs = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    inside = (xs >= 8.3) & (ys >= 6.6) & (xs + ys <= 62.9)
    assert torch.equal(out.silhouette[0].bool(), inside)
    assert set(torch.unique(out.silhouette).tolist()) == {0.0, 1.0}
    # depth along each pixel's ray = the plane's z there (perspective-correct interpolation)
    n = torch.linalg.cross(v[0, 1] - v[0, 0], v[0, 2] - v[0, 0], dim=-1)
    rays = torch.stack([xs, ys, torch.ones_like(xs)], -1).float() @ torch.linalg.inv(K[0]).T  # (H, W, 3), z = 1
    z_plane = (n @ v[0, 0]) / (rays @ n)
    assert torch.allclose(out.depth[0][inside], z_plane[inside], atol=1e-5)
    assert (out.depth[0][~inside] == 0).all()


def _brute_force(verts, faces, vcol, K, H, W, cull):
    """Every pixel centre against every face, float64: nearest face whose barycentrics are all >= 0."""
    v, K = verts[0].double(), K[0].double()
    p = v @ K.T
    uv, z = p[:, :2] / p[:, 2:], v[:, 2]
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    best = torch.full((H, W), float("inf"), dtype=torch.float64)
    rgb = torch.full((H, W, 3), 1.0, dtype=torch.float64)
    for i0, i1, i2 in faces.tolist():
        (x0, y0), (x1, y1), (x2, y2) = uv[i0].tolist(), uv[i1].tolist(), uv[i2].tolist()
        a2 = (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0)
        n = torch.linalg.cross(v[i1] - v[i0], v[i2] - v[i0], dim=0)
        if cull and (n @ v[i0]) >= 0:
            continue
        l1 = ((xs - x0) * (y2 - y0) - (ys - y0) * (x2 - x0)) / a2
        l2 = ((ys - y0) * (x1 - x0) - (xs - x0) * (y1 - y0)) / a2
        lam = torch.stack([1 - l1 - l2, l1, l2], -1)
        w = lam / z[[i0, i1, i2]]  # perspective-correct weights, unnormalised
        depth = 1.0 / w.sum(-1)
        hit = (lam >= 0).all(-1) & (depth < best)
        best = torch.where(hit, depth, best)
        col = (w * depth[..., None]) @ vcol[0, [i0, i1, i2]].double()
        rgb = torch.where(hit[..., None], col, rgb)
    return best, rgb


@pytest.mark.parametrize("cull", [True, False])
def test_equals_brute_force_on_a_random_triangle_soup(cull, zbuf):
    g = torch.Generator().manual_seed(7)
    H, W, n = 36, 44, 40
    K = intrinsics(60.0, 21.0, 17.0)
    uv = torch.rand(n * 3, 2, generator=g) * torch.tensor([64.0, 56.0]) - torch.tensor([10.0, 10.0])  # some off-screen
    uv = uv.view(n, 3, 2)
    uv = uv[:, :1] + (uv - uv[:, :1]) * torch.rand(n, 1, 1, generator=g)  # big and small faces
    z = 0.5 + torch.rand(n * 3, generator=g)  # tilted, interpenetrating
    verts = lift(uv.reshape(-1, 2), z, K)[None]
    faces = torch.arange(n * 3).view(n, 3)  # random windings: about half face away
    colors = torch.rand(1, n * 3, 3, generator=g)
    bright = Lighting(torch.ones(1, 3), torch.zeros(1, 3), torch.tensor([[0.0, 0.0, -1.0]]))  # albedo as is
    out = zbuf(cull_backfaces=cull)(verts, faces, colors, K, (H, W), bright)
    depth, rgb = _brute_force(verts, faces, colors, K, H, W, cull)
    hit = torch.isfinite(depth)
    assert 0.3 * H * W < hit.sum() < H * W
    assert torch.equal(out.silhouette[0].bool(), hit)
    assert torch.allclose(out.depth[0][hit].double(), depth[hit], atol=1e-5)
    assert torch.allclose(out.rgb[0][hit].double(), rgb[hit], atol=1e-4)
    assert (out.rgb[0][~hit] == 1.0).all()


def test_nearest_surface_wins_in_either_drawing_order(zbuf):
    K = intrinsics(100.0, 15.5, 15.5)
    near, far = quad(0.05, 0.5), quad(0.1, 0.8)  # 10 and 12.5 px half-widths about (15.5, 15.5)
    verts = torch.cat([near, far], 1)
    colors = torch.cat([torch.tensor([1.0, 0.0, 0.0]).expand(1, 4, 3), torch.tensor([0.0, 0.0, 1.0]).expand(1, 4, 3)], 1)
    bright = Lighting(torch.ones(1, 3), torch.zeros(1, 3), torch.tensor([[0.0, 0.0, -1.0]]))  # ambient 1: albedo
    r = zbuf()
    for faces in (torch.cat([QUAD_FACES, QUAD_FACES + 4]), torch.cat([QUAD_FACES + 4, QUAD_FACES])):
        out = r(verts, faces, colors, K, 32, bright)
        c = out.rgb[0, 15, 15]
        assert torch.allclose(c, torch.tensor([1.0, 0.0, 0.0]), atol=1e-5)  # the near red square
        assert out.depth[0, 15, 15].item() == pytest.approx(0.5, abs=1e-6)
        assert torch.allclose(out.rgb[0, 15, 4], torch.tensor([0.0, 0.0, 1.0]), atol=1e-5)  # far blue around it
        assert out.depth[0, 15, 4].item() == pytest.approx(0.8, abs=1e-6)


def test_backface_culling_and_open_meshes(zbuf):
    K = intrinsics(100.0, 15.5, 15.5)
    away = QUAD_FACES[:, [0, 2, 1]]  # the same square wound to face away from the camera
    assert zbuf()(quad(), away, torch.full((1, 4, 3), 0.5), K, 32).silhouette.sum() == 0
    drawn = zbuf(cull_backfaces=False)(quad(), away, torch.full((1, 4, 3), 0.5), K, 32)
    assert drawn.silhouette.sum() == 32 * 32  # the square covers the whole view


def test_matches_the_soft_rasteriser_with_hard_edges(zbuf):
    g = torch.Generator().manual_seed(0)
    v, faces = sphere(3, 0.08, (0.01, -0.02, 0.6))
    v = v * torch.tensor([1.0, 1.5, 0.7]) + torch.tensor([0.0, 0.0, 0.18])  # an ellipsoid, off-axis
    K = intrinsics(150.0, 30.0, 34.0)
    colors = torch.rand(1, v.shape[1], 3, generator=g)
    light = Lighting.from_vector(torch.tensor([[0.5, 0.6, 1.0, 0.9, 0.8, 1.0, 1.0, 1.0, 0.3, -0.4, -1.0]]))
    a = SoftRasterizer(sigma=1e-9)(v, faces, colors, K, (64, 72), light)
    b = zbuf()(v, faces, colors, K, (64, 72), light)
    ma, mb = a.silhouette > 0.5, b.silhouette > 0.5
    assert ma.sum() > 500
    assert (ma ^ mb).sum() <= 0.005 * ma.sum()  # pixel centres exactly on an edge may go either way
    both = ma & mb
    assert torch.allclose(a.depth[both], b.depth[both], atol=1e-4)
    assert torch.allclose(a.rgb[both], b.rgb[both], atol=2e-3)


def test_batch_equals_one_by_one_and_background(zbuf):
    g = torch.Generator().manual_seed(3)
    v, faces = sphere(2)
    B = 3
    verts = v.expand(B, -1, -1) + 0.03 * torch.randn(B, 1, 3, generator=g)
    colors = torch.rand(B, v.shape[1], 3, generator=g)
    K = torch.stack([intrinsics(140.0 + 10 * i, 23.0 + i, 24.0 - i)[0] for i in range(B)])
    bg = torch.rand(B, 40, 48, 3, generator=g)
    r = zbuf()
    out = r(verts, faces, colors, K, (40, 48), background=bg)
    for i in range(B):
        oi = r(verts[i : i + 1], faces, colors[i : i + 1], K[i : i + 1], (40, 48), background=bg[i : i + 1])
        assert torch.equal(out.silhouette[i], oi.silhouette[0])
        assert torch.allclose(out.rgb[i], oi.rgb[0], atol=1e-6)
    off = out.silhouette == 0
    assert off.any() and torch.equal(out.rgb[off], bg[off])


def test_no_gradients_are_kept(zbuf):
    v, faces = sphere(1)
    r = zbuf()
    assert not r.differentiable
    out = r(v.clone().requires_grad_(True), faces, torch.full_like(v, 0.5), intrinsics(150.0, 15.5, 15.5), 32)
    assert out.silhouette.sum() > 0 and not out.rgb.requires_grad


def test_training_refuses_a_renderer_without_gradients(synth_cache, tmp_path):
    from conftest import tiny_overrides
    from handrecon.cli import compose_config
    from handrecon.cli.train import build_module

    cfg = compose_config([*tiny_overrides(synth_cache), "stage=ssl_e2e", "renderer=zbuffer"], tmp_path)
    with pytest.raises(ValueError, match="ZBufferRenderer keeps no gradients.*photo.*renderer=soft"):
        build_module(cfg)
    # a stage without rendered terms may use it (it is never called for a loss there)
    build_module(compose_config([*tiny_overrides(synth_cache), "stage=ssl_shape", "renderer=zbuffer"], tmp_path))


def test_backends_cover_the_same_pixels_of_a_posed_hand():
    from handrecon.geometry.rotation import axis_angle_to_matrix
    from handrecon.models.hand_model import HandModel

    hm = HandModel()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        out = hm(0.8 * torch.randn(4, hm.pose_dim, generator=g), torch.zeros(4, hm.num_betas))
    rot = axis_angle_to_matrix(1.5 * torch.randn(4, 3, generator=g))
    verts = (out.verts - out.verts.mean(1, keepdim=True)) @ rot.transpose(1, 2) + torch.tensor([0.0, 0.0, 0.5])
    K = intrinsics(300.0, 63.5, 63.5, B=4)
    colors = torch.rand(4, hm.num_verts, 3, generator=g)
    a = ZBufferRenderer(backend="torch")(verts, hm.faces, colors, K, 128)
    b = ZBufferRenderer(backend="numba")(verts, hm.faces, colors, K, 128)
    assert a.silhouette.sum() > 4 * 1500
    assert torch.equal(a.silhouette, b.silhouette)
    assert torch.allclose(a.depth, b.depth, atol=1e-6)
    assert torch.allclose(a.rgb, b.rgb, atol=1e-4)  # a shared edge at equal depth may take either face


def test_backend_option_is_checked():
    with pytest.raises(ValueError, match=r"backend='cuda' \(renderer.backend or overlay_renderer.backend\): expected one of"):
        ZBufferRenderer(backend="cuda")
    auto = ZBufferRenderer(backend="auto")  # numba is a dependency: CPU overlays use it, other devices tensor ops
    assert (auto.backend_for("cpu"), auto.backend_for("cuda")) == ("numba", "torch")
    assert ZBufferRenderer(backend="torch").backend_for("cpu") == "torch"


def test_non_finite_faces_are_skipped_and_huge_ones_clipped(zbuf):
    K = intrinsics(100.0, 15.5, 15.5)
    good = quad(0.05, 0.5)  # 10 px half-width square in the middle
    nan_face = torch.tensor([[[float("nan"), 0.0, 0.5], [0.01, 0.0, 0.5], [0.0, 0.01, 0.5]]])
    huge = quad(1e7, 5.0)  # 4e8 px wide, behind the square
    verts = torch.cat([good, nan_face, huge], 1)
    faces = torch.cat([QUAD_FACES, torch.tensor([[4, 5, 6]]), QUAD_FACES + 7])
    out = zbuf(cull_backfaces=False)(verts, faces, torch.full((1, 11, 3), 0.5), K, 32)
    ref = zbuf(cull_backfaces=False)(good, QUAD_FACES, torch.full((1, 4, 3), 0.5), K, 32)
    assert torch.isfinite(out.rgb).all() and torch.isfinite(out.depth).all()
    inside = ref.silhouette > 0
    assert inside.sum() == 400 and torch.equal(out.depth[inside], ref.depth[inside])  # the square in front
    assert (out.silhouette == 1).all() and (out.depth[~inside] == 5.0).all()  # the huge quad behind, clipped
