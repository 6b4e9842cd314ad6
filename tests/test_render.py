"""Differentiable renderer: closed-form coverage, depth and Lambert shading, gradients, batching, memory."""

from __future__ import annotations

import math

import pytest
import torch
import trimesh

from handrecon.render import (
    Lighting,
    PyTorch3DRenderer,
    SoftRasterizer,
    ZBufferRenderer,
    available_backends,
    build_renderer,
    sh_basis,
    vertex_normals,
)
from handrecon.render.soft import edge_topology

F64 = torch.float64


def intrinsics(f, cx, cy, B=1, dtype=torch.float32):
    return torch.tensor([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]], dtype=dtype).expand(B, 3, 3).clone()


def lift(uv, z, K):
    """Pixels uv (N, 2) at depths z (N,) -> camera points (N, 3) (inverse of the projection)."""
    ones = torch.ones(uv.shape[0], 1, dtype=K.dtype)
    rays = torch.cat([uv, ones], -1) @ torch.linalg.inv(K[0]).T
    return rays * z[:, None]


def sphere(subdivisions=3, radius=0.1, center=(0.0, 0.0, 0.6), dtype=torch.float32):
    m = trimesh.creation.icosphere(subdivisions=subdivisions)
    v = torch.tensor(m.vertices, dtype=dtype) * radius + torch.tensor(center, dtype=dtype)
    return v[None], torch.tensor(m.faces, dtype=torch.long)


# A square at depth z facing the camera (outward normal -z): faces wound (0, 2, 1), (0, 3, 2).
QUAD_FACES = torch.tensor([[0, 2, 1], [0, 3, 2]])


def quad(half=0.5, z=1.0, dtype=torch.float32):
    h = half
    return torch.tensor([[[-h, -h, z], [h, -h, z], [h, h, z], [-h, h, z]]], dtype=dtype)


# ------------------------------------------------------------------------------------ coverage


def test_pixel_convention_integer_centres_rows_are_y():
    # a 0.8 px square centred on pixel (u=5, v=7) lights exactly that pixel: row 7, column 5
    K = intrinsics(100.0, 0.0, 0.0)
    uv = torch.tensor([[4.6, 6.6], [5.4, 6.6], [5.4, 7.4], [4.6, 7.4]])
    v = lift(uv, torch.ones(4), K)[None]
    out = SoftRasterizer(sigma=1e-9)(v, QUAD_FACES, torch.ones(1, 4, 3), K, (10, 12))
    assert out.silhouette.shape == (1, 10, 12)
    lit = torch.nonzero(out.silhouette[0] > 0.5).tolist()
    assert lit == [[7, 5]]


def test_triangle_area_and_plane_depth():
    K = intrinsics(120.0, 31.5, 31.5, dtype=F64)
    uv = torch.tensor([[8.3, 6.6], [56.3, 6.6], [8.3, 54.6]], dtype=F64)  # right triangle, legs 48 px
    z = torch.tensor([0.8, 1.1, 1.4], dtype=F64)  # tilted plane
    v = lift(uv, z, K)[None]
    faces = torch.tensor([[0, 1, 2]])
    r = SoftRasterizer(sigma=1e-10)
    out = r(v, faces, torch.full((1, 3, 3), 0.5, dtype=F64), K, 64)
    # exactly the pixel centres inside the triangle x >= 8.3, y >= 6.6, x + y <= 62.9 ...
    ys, xs = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    centres_inside = ((xs >= 8.3) & (ys >= 6.6) & (xs + ys <= 62.9)).sum().item()
    assert out.silhouette.sum().item() == centres_inside
    # ... which is the triangle's area up to the pixel sampling
    assert out.silhouette.sum().item() == pytest.approx(0.5 * 48 * 48, rel=0.025)
    assert set(torch.unique(out.silhouette).tolist()) == {0.0, 1.0}  # hard edges as sigma -> 0
    # depth at interior pixels = the plane's z along each pixel's ray
    n = torch.linalg.cross(v[0, 1] - v[0, 0], v[0, 2] - v[0, 0])
    for uu, vv in [(12, 10), (30, 20), (15, 40)]:
        ray = torch.linalg.inv(K[0]) @ torch.tensor([uu, vv, 1.0], dtype=F64)
        z_plane = (n @ v[0, 0]) / (n @ ray) * ray[2]
        assert out.depth[0, vv, uu].item() == pytest.approx(z_plane.item(), rel=1e-9)
    assert out.depth[0, 60, 60] == 0 and out.silhouette[0, 60, 60] == 0
    # winding does not matter for coverage or depth
    out2 = r(v, faces[:, [0, 2, 1]], torch.full((1, 3, 3), 0.5, dtype=F64), K, 64)
    assert torch.equal(out2.silhouette, out.silhouette)
    assert torch.allclose(out2.depth, out.depth, rtol=1e-12)


def test_sphere_silhouette_area_and_depth():
    R, z0, f, S = 0.1, 0.6, 150.0, 64
    v, faces = sphere(3, R, (0.0, 0.0, z0))
    K = intrinsics(f, (S - 1) / 2, (S - 1) / 2)
    area = math.pi * (f * R) ** 2 / (z0**2 - R**2)  # tangent cone of a sphere on the optical axis
    out = SoftRasterizer(sigma=1e-6)(v, faces, torch.full_like(v, 0.5), K, S)
    assert out.silhouette.sum().item() == pytest.approx(area, rel=0.02)
    c = (S - 1) // 2
    assert out.depth[0, c, c].item() == pytest.approx(z0 - R, abs=2e-3)  # nearest point, not the back
    # the default soft edge keeps the area close too
    out_soft = SoftRasterizer()(v, faces, torch.full_like(v, 0.5), K, S)
    assert out_soft.silhouette.sum().item() == pytest.approx(area, rel=0.04)


def test_random_face_winding_does_not_change_silhouette():
    v, faces = sphere(2)
    K = intrinsics(150.0, 23.5, 23.5)
    g = torch.Generator().manual_seed(0)
    flip = torch.rand(faces.shape[0], generator=g) < 0.5
    mixed = torch.where(flip[:, None], faces[:, [0, 2, 1]], faces)
    r = SoftRasterizer()
    a = r(v, faces, torch.full_like(v, 0.5), K, 48).silhouette
    b = r(v, mixed, torch.full_like(v, 0.5), K, 48).silhouette
    assert a.sum() > 100
    assert torch.allclose(a, b, atol=1e-6)


def test_edge_on_slivers_give_finite_colours_and_gradients():
    # near-degenerate projected triangles (third corner 1e-3..1e-7 px off the line of the other two,
    # as edge-on faces of a posed hand): in float32 their barycentrics are rounding noise; before the
    # sliver test, 19 of these 300 gave non-finite colours (a training run stopped on a NaN gradient)
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(300, 2, generator=g) * 90, torch.rand(300, 2, generator=g) * 90
    t = torch.rand(300, 1, generator=g)
    n = torch.stack([a[:, 1] - b[:, 1], b[:, 0] - a[:, 0]], -1)
    n = n / n.norm(dim=-1, keepdim=True)
    c = a + t * (b - a) + n * 10 ** (-3 - 4 * torch.rand(300, 1, generator=g))
    K = intrinsics(130.0, 48.0, 48.0, B=300)
    z = 0.6 + 0.3 * torch.rand(300, 3, generator=g)
    uv = torch.stack([a, b, c], 1)  # (B, 3, 2)
    v = (torch.cat([uv, torch.ones(300, 3, 1)], -1) @ torch.linalg.inv(K[0]).T * z[..., None]).requires_grad_(True)
    colors = torch.rand(300, 3, 3, generator=g)
    out = SoftRasterizer()(v, torch.tensor([[0, 1, 2]]), colors, K, (96, 96))
    out.rgb.sum().backward()
    assert torch.isfinite(out.rgb).all() and torch.isfinite(out.silhouette).all()
    assert torch.isfinite(v.grad).all()
    # a sliver covers (almost) nothing: no pixel of it is drawn with full coverage
    assert float(out.silhouette.amax()) < 1.0


@pytest.mark.parametrize("backend", [SoftRasterizer, ZBufferRenderer])
def test_far_outside_or_behind_gives_nothing(backend):
    v, faces = sphere(1)
    K = intrinsics(150.0, 15.5, 15.5)
    r = backend(background_color=(0.2, 0.3, 0.4))
    for shift in ([10.0, 0.0, 0.0], [0.0, -5.0, 0.0], [0.0, 0.0, -2.0]):
        out = r(v + torch.tensor(shift), faces, torch.full_like(v, 0.5), K, 32)
        assert out.silhouette.abs().max() == 0 and out.depth.abs().max() == 0
        assert torch.allclose(out.rgb, torch.tensor([0.2, 0.3, 0.4]).expand(1, 32, 32, 3))


def test_edge_topology_of_closed_mesh():
    _, faces = sphere(1)
    opp, partner = edge_topology(faces)
    assert (partner >= 0).all()  # closed manifold: every edge has two faces
    assert not (partner == opp).any()
    _, partner_open = edge_topology(QUAD_FACES)
    assert (partner_open >= 0).sum() == 2  # only the shared diagonal, once from each side


# ------------------------------------------------------------------------------------ shading


@pytest.mark.parametrize("shading", ["gouraud", "phong", "flat"])
def test_lambert_closed_form(shading):
    K = intrinsics(30.0, 15.5, 15.5)
    v = quad(0.5, 1.0)
    assert torch.allclose(vertex_normals(v, QUAD_FACES), torch.tensor([0.0, 0.0, -1.0]).expand(1, 4, 3))
    albedo = torch.tensor([0.8, 0.5, 0.3])
    colors = albedo.expand(1, 4, 3)
    amb, dirn = 0.3, 0.6
    r = SoftRasterizer(shading=shading)
    for angle, cos in [(0.0, 1.0), (60.0, 0.5), (120.0, 0.0)]:
        a = math.radians(angle)
        light = Lighting(
            ambient=torch.full((1, 3), amb),
            directional=torch.full((1, 3), dirn),
            direction=4.0 * torch.tensor([[math.sin(a), 0.0, -math.cos(a)]]),  # not unit: normalised inside
        )
        out = r(v, QUAD_FACES, colors, K, 32, light)
        assert torch.allclose(out.rgb[0, 16, 12], albedo * (amb + dirn * cos), atol=1e-5)
        assert torch.allclose(out.rgb[0, 5, 26], albedo * (amb + dirn * cos), atol=1e-5)


def test_lighting_from_vector_and_default():
    v = torch.tensor([[0.4, 0.7, 1.0, 0.5, 0.25, 0.2, 0.4, 1.0, 0.0, 0.0, -2.0]])
    L = Lighting.from_vector(v)
    assert torch.allclose(L.ambient, torch.tensor([[0.4, 0.2, 0.1]]))
    assert torch.allclose(L.directional, torch.tensor([[0.14, 0.28, 0.7]]))
    assert torch.allclose(L.direction, torch.tensor([[0.0, 0.0, -2.0]]))
    with pytest.raises(ValueError, match="11"):
        Lighting.from_vector(torch.zeros(2, 10))
    # default light: a front-facing surface shows its albedo
    K = intrinsics(30.0, 15.5, 15.5)
    albedo = torch.tensor([0.7, 0.4, 0.2])
    out = SoftRasterizer()(quad(), QUAD_FACES, albedo.expand(1, 4, 3), K, 32)
    assert torch.allclose(out.rgb[0, 16, 16], albedo, atol=1e-6)


def test_spherical_harmonics_lighting():
    n = torch.nn.functional.normalize(torch.randn(50, 3), dim=-1)
    Y = sh_basis(n)
    assert torch.allclose(Y[:, 0], torch.full((50,), 0.5 / math.sqrt(math.pi)))
    assert torch.allclose(Y[:, 2], math.sqrt(3 / (4 * math.pi)) * n[:, 2])
    K = intrinsics(30.0, 15.5, 15.5)
    sh = torch.zeros(1, 9, 3)
    sh[0, 0] = torch.tensor([1.0, 2.0, 3.0])
    sh[0, 2] = torch.tensor([-0.5, 0.0, 0.5])  # z term; the quad's normal is -z
    light = Lighting.default(1)
    light.sh = sh
    albedo = torch.tensor([0.5, 0.4, 0.3])
    out = SoftRasterizer(shading="phong")(quad(), QUAD_FACES, albedo.expand(1, 4, 3), K, 32, light)
    expected = albedo * (0.5 / math.sqrt(math.pi) * sh[0, 0] - math.sqrt(3 / (4 * math.pi)) * sh[0, 2])
    assert torch.allclose(out.rgb[0, 16, 16], expected, atol=1e-5)


def test_background_image_composite_and_faces_per_pixel():
    K = intrinsics(30.0, 15.5, 15.5)
    bg = torch.rand(1, 32, 32, 3)
    front, back = quad(0.2, 1.0), quad(0.4, 1.2)
    v = torch.cat([front, back], 1)
    faces = torch.cat([QUAD_FACES, QUAD_FACES + 4])
    colors = torch.cat(
        [torch.tensor([1.0, 0.0, 0.0]).expand(1, 4, 3), torch.tensor([0.0, 0.0, 1.0]).expand(1, 4, 3)], 1
    )
    out = SoftRasterizer()(v, faces, colors, K, 32, background=bg)
    assert torch.allclose(out.rgb[0, 0, 0], bg[0, 0, 0])  # outside: the background image
    assert torch.allclose(out.rgb[0, 16, 16], torch.tensor([1.0, 0.0, 0.0]), atol=1e-5)  # nearest is red
    assert torch.allclose(out.rgb[0, 16, 22], torch.tensor([0.0, 0.0, 1.0]), atol=1e-5)  # only the back quad
    assert out.depth[0, 16, 16].item() == pytest.approx(1.0) and out.depth[0, 16, 22].item() == pytest.approx(
        1.2
    )
    # a large depth temperature mixes the two layers; keeping the nearest face only does not
    mixed = SoftRasterizer(gamma=10.0)(v, faces, colors, K, 32).rgb[0, 16, 16]
    assert mixed[2] > 0.3 and mixed[0] > 0.3
    nearest = SoftRasterizer(gamma=10.0, faces_per_pixel=1)(v, faces, colors, K, 32).rgb[0, 16, 16]
    assert torch.allclose(nearest, torch.tensor([1.0, 0.0, 0.0]), atol=1e-5)


# ------------------------------------------------------------------------------------ gradients


def _gradcheck_case(shading, use_sh):
    g = torch.Generator().manual_seed(1)
    K = intrinsics(20.0, 3.6, 3.3, dtype=F64)
    v = torch.tensor(
        [[[-0.12, -0.1, 1.0], [0.15, -0.13, 1.05], [-0.05, 0.16, 0.95],
          [-0.1, -0.02, 1.3], [0.2, 0.05, 1.25], [0.02, 0.2, 1.35]]], dtype=F64,
    )  # fmt: skip
    faces = torch.tensor([[0, 2, 1], [3, 4, 5]])  # two overlapping triangles at different depths
    c = torch.rand(1, 6, 3, dtype=F64, generator=g)
    lv = torch.tensor([[0.6, 0.5, 1.0, 0.9, 0.8, 1.0, 0.95, 0.9, 0.2, -0.3, -1.0]], dtype=F64)
    sh = 0.3 * torch.randn(1, 9, 3, dtype=F64, generator=g)
    w = [torch.randn(1, 8, 8, *s, dtype=F64, generator=g) for s in [(3,), (), ()]]
    r = SoftRasterizer(sigma=3e-2, gamma=0.05, edge_eps=1e-10, shading=shading)

    def fn(v, c, lv, sh):
        light = Lighting.from_vector(lv)
        if use_sh:
            light.sh = sh
        o = r(v, faces, c, K, 8, light)
        return (o.rgb * w[0]).sum() + (o.silhouette * w[1]).sum() + (o.depth * w[2]).sum()

    inputs = tuple(t.clone().requires_grad_() for t in (v, c, lv, sh))
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)
    assert r.last_stats["pairs"] > 50


@pytest.mark.parametrize("shading,use_sh", [("gouraud", False), ("phong", True), ("flat", False)])
def test_gradcheck_verts_colors_lighting(shading, use_sh):
    _gradcheck_case(shading, use_sh)


def test_gradcheck_closed_mesh_with_interior_edges():
    m = trimesh.creation.icosphere(subdivisions=0)
    v = (torch.tensor(m.vertices, dtype=F64) * 0.2 * torch.tensor([1.0, 0.8, 0.9], dtype=F64))[None]
    v = v + torch.tensor([0.01, -0.02, 1.0], dtype=F64)
    faces = torch.tensor(m.faces)
    K = intrinsics(14.0, 3.4, 3.6, dtype=F64)
    g = torch.Generator().manual_seed(2)
    c = torch.rand(1, v.shape[1], 3, dtype=F64, generator=g)
    w = [torch.randn(1, 8, 8, *s, dtype=F64, generator=g) for s in [(3,), (), ()]]
    r = SoftRasterizer(sigma=3e-2, gamma=0.05, edge_eps=1e-10, shading="phong")
    # light off the axis: some vertex normals of this icosahedron have n_z = 0 exactly (relu kink)
    light = Lighting.from_vector(torch.tensor([[0.5, 0.6, 1, 1, 1, 1, 1, 1, 0.3, -0.4, -1.0]], dtype=F64))

    def fn(v, c):
        o = r(v, faces, c, K, 8, light)
        return (o.rgb * w[0]).sum() + (o.silhouette * w[1]).sum() + (o.depth * w[2]).sum()

    assert torch.autograd.gradcheck(
        fn, (v.clone().requires_grad_(), c.clone().requires_grad_()), eps=1e-6, atol=1e-6
    )
    assert 0 < r.last_stats["contour_faces"] < 20  # the front/back interior edges are not contours


def test_silhouette_area_gradient_matches_closed_form_and_finite_differences():
    # d(area)/ds for a sphere of radius s R on the optical axis: 2 pi f^2 R^2 s z0^2 / (z0^2 - R^2 s^2)^2
    R, z0, f, S = 0.1, 0.6, 150.0, 64
    v, faces = sphere(3, 1.0, (0.0, 0.0, 0.0), dtype=F64)
    K = intrinsics(f, (S - 1) / 2, (S - 1) / 2, dtype=F64)
    expected = 2 * math.pi * f**2 * R * z0**2 / (z0**2 - R**2) ** 2
    for sigma, rel in [(1e-3, 0.05), (1e-4, None)]:

        def area(s, r=SoftRasterizer(sigma=sigma)):
            return r(
                v * s + torch.tensor([0.0, 0.0, z0], dtype=F64), faces, torch.full_like(v, 0.5), K, S
            ).silhouette.sum()

        s = torch.tensor(R, dtype=F64, requires_grad=True)
        (g,) = torch.autograd.grad(area(s), s)
        h = 2e-4
        fd = (area(torch.tensor(R + h, dtype=F64)) - area(torch.tensor(R - h, dtype=F64))) / (2 * h)
        # the silhouette is continuous (also when the contour hops between mesh edges): autograd = FD
        assert g.item() == pytest.approx(fd.item(), rel=0.03)
        if rel is not None:  # a band of a few px averages the pixel sampling: the true derivative
            assert g.item() == pytest.approx(expected, rel=rel)


# ------------------------------------------------------------------------------------ batching, memory


def test_batch_equals_one_by_one():
    g = torch.Generator().manual_seed(3)
    v, faces = sphere(2)
    B = 3
    verts = v.expand(B, -1, -1) + 0.03 * torch.randn(B, 1, 3, generator=g)
    verts = verts * (1 + 0.1 * torch.rand(B, v.shape[1], 1, generator=g))
    colors = torch.rand(B, v.shape[1], 3, generator=g)
    K = torch.stack([intrinsics(140.0 + 10 * i, 23.0 + i, 24.0 - i)[0] for i in range(B)])
    light = Lighting.from_vector(torch.rand(B, 11, generator=g) - torch.tensor([0.0] * 8 + [0.5, 0.5, 1.0]))
    r = SoftRasterizer(shading="phong")
    out = r(verts, faces, colors, K, (40, 48), light)
    for i in range(B):
        Li = Lighting(light.ambient[i : i + 1], light.directional[i : i + 1], light.direction[i : i + 1])
        oi = r(verts[i : i + 1], faces, colors[i : i + 1], K[i : i + 1], (40, 48), Li)
        assert torch.allclose(out.rgb[i], oi.rgb[0], atol=1e-5)
        assert torch.allclose(out.silhouette[i], oi.silhouette[0], atol=1e-5)
        assert torch.allclose(out.depth[i], oi.depth[0], atol=1e-6)


def test_memory_is_sparse_not_faces_times_pixels():
    v, faces = sphere(3)
    B, S = 2, 64
    verts = v.expand(B, -1, -1).clone().requires_grad_()
    colors = torch.full_like(verts, 0.5).requires_grad_()
    K = intrinsics(150.0, 31.5, 31.5, B)
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    r = SoftRasterizer()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = r(verts, faces, colors, K, S)
    out.rgb.sum().backward()
    P, F_, HW = r.last_stats["pairs"], faces.shape[0], S * S
    dense = B * F_ * HW
    assert r.last_stats["bbox_pairs"] < 0.01 * dense
    # every saved intermediate is O(pairs + pixels + faces), orders of magnitude below B x F x H x W
    assert max(sizes) <= 10 * max(P, B * HW, B * F_)
    assert max(sizes) < 0.01 * dense
    assert verts.grad is not None and torch.isfinite(verts.grad).all()


def test_bad_inputs_raise_clear_errors():
    v, faces = sphere(1)
    K = intrinsics(100.0, 8.0, 8.0)
    r = SoftRasterizer()
    with pytest.raises(ValueError, match="colors"):
        r(v, faces, torch.zeros(1, 5, 3), K, 16)
    with pytest.raises(ValueError, match="K must"):
        r(v, faces, torch.zeros_like(v), K[0], 16)
    with pytest.raises(ValueError, match="faces index"):
        r(v, faces + 1000, torch.zeros_like(v), K, 16)
    with pytest.raises(ValueError, match="background"):
        r(v, faces, torch.zeros_like(v), K, 16, background=torch.zeros(1, 8, 8, 3))
    with pytest.raises(ValueError, match="shading"):
        SoftRasterizer(shading="toon")


# ------------------------------------------------------------------------------------ backends, configs


def test_backends_and_hydra_config():
    from pathlib import Path

    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    assert "soft" in available_backends()
    conf = Path(__file__).resolve().parents[1] / "conf" / "renderer"
    r = instantiate(OmegaConf.load(conf / "soft.yaml"))
    assert isinstance(r, SoftRasterizer) and r.sigma == 1e-4 and r.shading == "gouraud"
    assert isinstance(build_renderer("soft", sigma=1e-3), SoftRasterizer)
    p3d = OmegaConf.load(conf / "pytorch3d.yaml")
    assert p3d._target_.endswith("PyTorch3DRenderer")
    if "pytorch3d" not in available_backends():
        with pytest.raises(ImportError, match="no PyPI wheel"):
            PyTorch3DRenderer()


def test_pytorch3d_silhouette_matches_soft():
    pytest.importorskip("pytorch3d", reason="pytorch3d is optional and has no PyPI wheel")
    v, faces = sphere(3, 0.08, (0.02, -0.01, 0.6))
    v = v * torch.tensor([1.0, 1.6, 0.7]) + torch.tensor([0.0, 0.0, 0.2])  # an ellipsoid, off-axis
    K = intrinsics(150.0, 30.0, 34.0)
    colors = torch.full_like(v, 0.6)
    a = SoftRasterizer()(v, faces, colors, K, (64, 72))
    b = PyTorch3DRenderer()(v, faces, colors, K, (64, 72))
    ma, mb = a.silhouette > 0.5, b.silhouette > 0.5
    iou = (ma & mb).sum() / (ma | mb).sum()
    assert iou > 0.95
    both = ma & mb
    assert torch.allclose(a.depth[both], b.depth[both], atol=2e-3)
