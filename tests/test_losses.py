"""Closed-form tests of the loss terms (handrecon.losses.terms), the mesh Laplacian and SSLObjective."""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import pytest
import torch

from handrecon.joints import BONES, FINGERTIPS, NUM_JOINTS, WRIST
from handrecon.losses import terms as T
from handrecon.losses.mesh import CotangentLaplacian, cotangent_weights
from handrecon.losses.objective import (
    METHOD_NAMES,
    TERM_NAMES,
    LossInputs,
    NonFiniteLossError,
    SSLObjective,
)

ROOT = Path(__file__).resolve().parents[1]


def _skeleton(b: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 20.0 + 180.0 * torch.rand(b, NUM_JOINTS, 2, generator=g)  # (B, 21, 2) px


def _grid(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat n x n grid in the z = 0 plane (unit spacing), every quad split along the same diagonal."""
    ii, jj = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    verts = torch.stack([jj.flatten().float(), ii.flatten().float(), torch.zeros(n * n)], -1)  # (n*n, 3)
    faces = []
    for i in range(n - 1):
        for j in range(n - 1):
            a, b, c, d = i * n + j, i * n + j + 1, (i + 1) * n + j, (i + 1) * n + j + 1
            faces += [[a, b, d], [a, d, c]]
    return verts, torch.tensor(faces)


# ----------------------------------------------------------------------------- robust_px


def test_robust_px_values_and_c1_continuity():
    d = torch.tensor([0.0, 5.0, 10.0, 1.0])
    assert torch.allclose(T.robust_px(d), torch.tensor([0.0, 2.5, 7.5, 0.1]))
    eps = 1e-4
    x = torch.tensor([5.0 - eps, 5.0 + eps], dtype=torch.float64, requires_grad=True)
    y = T.robust_px(x)
    assert abs(float(y[1].detach() - y[0].detach())) < 3 * eps  # continuous at beta
    (g,) = torch.autograd.grad(y.sum(), x)
    assert torch.allclose(g, torch.ones(2, dtype=torch.float64), atol=1e-3)  # slope 1 on both sides
    assert torch.allclose(T.robust_px(torch.tensor([1.0, 3.0]), beta=2.0), torch.tensor([0.25, 2.0]))


# ----------------------------------------------------------------------------- 2D keypoints


def test_default_joint_weight():
    w = T.default_joint_weight()
    assert w[WRIST] == 2.0 and all(w[t] == 1.5 for t in FINGERTIPS)
    assert float(w.sum()) == 2.0 + 5 * 1.5 + 15 * 1.0


def test_kp2d_loss_zero_when_on_detections():
    det = _skeleton(3)
    conf = torch.rand(3, NUM_JOINTS)
    assert torch.allclose(T.kp2d_loss(det.clone(), det, conf), torch.zeros(3))


def test_kp2d_loss_single_displaced_fingertip_hand_computed():
    det = _skeleton(1)
    pred = det.clone()
    pred[0, 8, 0] += 10.0  # index tip 10 px off: robust 10 - 2.5 = 7.5
    conf = torch.ones(1, NUM_JOINTS)
    # weights (c w)^2: wrist 4, five tips 2.25 each, fifteen others 1 -> 30.25
    assert torch.allclose(T.kp2d_loss(pred, det, conf), torch.tensor([2.25 * 7.5 / 30.25]))
    conf2 = conf.clone()
    conf2[0, 8] = 0.5  # tip weight (0.5 * 1.5)^2 = 0.5625, total 30.25 - 2.25 + 0.5625
    assert torch.allclose(T.kp2d_loss(pred, det, conf2), torch.tensor([0.5625 * 7.5 / 28.5625]))
    pred[0, WRIST, 1] -= 3.0  # wrist 3 px off: 9 / 10 = 0.9, weight 4
    assert torch.allclose(T.kp2d_loss(pred, det, conf), torch.tensor([(2.25 * 7.5 + 4 * 0.9) / 30.25]))


def test_kp2d_loss_ignores_zero_confidence_even_nan_detection():
    det = _skeleton(2)
    pred = (det + 1.0).requires_grad_(True)
    conf = torch.ones(2, NUM_JOINTS)
    conf[1] = 0.0  # sample 1: nothing detected, its detections are NaN
    det[1] = float("nan")
    conf[0, 3] = 0.0
    det[0, 3] = float("nan")
    loss = T.kp2d_loss(pred, det, conf)
    assert float(loss[1].detach()) == 0.0 and torch.isfinite(loss).all()
    loss.sum().backward()
    assert torch.isfinite(pred.grad).all() and (pred.grad[1] == 0).all()


def test_bone_direction_invariant_to_scale_and_translation():
    det = _skeleton(2)
    pred = 3.0 * det + torch.tensor([10.0, -4.0])
    assert torch.allclose(T.bone_direction_loss(pred, det, torch.rand(2, NUM_JOINTS)), torch.zeros(2), atol=1e-6)


def test_bone_direction_90_degree_bone_known_value():
    det = _skeleton(1)
    pred = det.clone()
    v = det[0, 4] - det[0, 3]  # leaf bone 3 -> 4 (thumb tip): only this bone changes
    pred[0, 4] = det[0, 3] + torch.stack([-v[1], v[0]])  # rotated 90 degrees: |u - u_perp|^2 = 2
    conf = torch.ones(1, NUM_JOINTS)
    assert len(BONES) == 20
    assert torch.allclose(T.bone_direction_loss(pred, det, conf), torch.tensor([2.0 / 20]), atol=1e-5)
    conf[0, 4] = 0.5  # that bone's weight 1 * 0.5: the reference's mean over the 20 bones, 0.5 * 2 / 20
    assert torch.allclose(T.bone_direction_loss(pred, det, conf), torch.tensor([0.05]), atol=1e-5)
    # every confidence 0.5: all weights 0.25 -> 0.25 * 2 / 20 (not / the sum of the weights, which gave 0.1)
    assert torch.allclose(T.bone_direction_loss(pred, det, torch.full((1, NUM_JOINTS), 0.5)), torch.tensor([0.025]),
                          atol=1e-5)


def test_heatmap_integral_sums_stages_with_conf_squared():
    det = _skeleton(1)
    s1 = det.clone()
    s2 = det.clone()
    s2[0, 5] += torch.tensor([3.0, 4.0])  # 5 px (plain distance, not smoothed)
    conf = torch.ones(1, NUM_JOINTS)
    assert torch.allclose(T.heatmap_integral_loss([s1, s2], det, conf), torch.tensor([5.0 / 21]))
    conf[0, 5] = 0.5  # weight 0.25 of 20.25
    assert torch.allclose(T.heatmap_integral_loss([s2, s2], det, conf), torch.tensor([2 * 0.25 * 5.0 / 20.25]))


def test_kp_consistency_robust_mean():
    a = _skeleton(1)
    b = a.clone()
    b[0, 0, 0] += 3.0  # 0.9
    b[0, 7, 1] += 10.0  # 7.5
    assert torch.allclose(T.kp_consistency_loss(a, b), torch.tensor([(0.9 + 7.5) / 21]))


def test_kp2d_gt_loss_masks_unlabelled():
    gt = _skeleton(2)
    gt[1] = float("nan")
    pred = (gt.nan_to_num(50.0) + torch.tensor([0.0, 3.0])).requires_grad_(True)
    out = T.kp2d_gt_loss(pred, gt, torch.tensor([True, False]))
    assert torch.allclose(out, torch.tensor([0.9, 0.0]))
    out.sum().backward()
    assert torch.isfinite(pred.grad).all()


# ----------------------------------------------------------------------------- 3D / priors


def test_pose_prior_z_weighted_twice_and_mean_over_16_x_3():
    x = torch.zeros(1, 15, 3)
    x[0, 4, 0] = 0.3
    z = torch.zeros(1, 15, 3)
    z[0, 4, 2] = 0.3
    # the reference: mean over its 16 x 3 values (the root row, always inside, counts 0)
    assert torch.allclose(T.pose_prior_loss(x), torch.tensor([0.3 / 48]))
    assert torch.allclose(T.pose_prior_loss(z), torch.tensor([0.6 / 48]))
    assert torch.allclose(T.pose_prior_loss(z, z_weight=1.0), T.pose_prior_loss(x))
    assert torch.allclose(T.pose_prior_loss(x, rows=15), torch.tensor([0.3 / 45]))
    assert float(T.pose_prior_loss(torch.zeros(2, 15, 3)).abs().sum()) == 0.0


def test_scale_loss_zero_at_28_2_mm():
    j = torch.rand(2, NUM_JOINTS, 3)
    direction = torch.tensor([0.6, 0.0, 0.8])
    j[0, 10] = j[0, 9] + 0.0282 * direction
    j[1, 10] = j[1, 9] + 0.0382 * direction
    assert torch.allclose(T.scale_loss(j), torch.tensor([0.0, 0.01]), atol=1e-7)


def test_shape_loss_mean_of_squares():
    betas = torch.zeros(2, 10)
    betas[1] = 0.1
    betas[0, 0] = 1.0
    assert torch.allclose(T.shape_loss(betas), torch.tensor([0.1, 0.01]))


def test_joints3d_loss_root_relative_and_masked():
    gt = torch.rand(2, NUM_JOINTS, 3)
    pred = (gt + torch.tensor([0.1, -0.2, 0.5])).requires_grad_(True)
    assert torch.allclose(T.joints3d_loss(pred, gt), torch.zeros(2), atol=1e-6)  # translation ignored
    gt2 = gt.clone()
    gt2[0, 4, 0] += 0.021  # one coordinate off
    gt2[1] = float("nan")
    out = T.joints3d_loss(pred, gt2, torch.tensor([True, False]))
    assert torch.allclose(out, torch.tensor([0.021 / 63, 0.0]), atol=1e-6)
    out2 = T.joints3d_loss(pred, gt2, torch.tensor([True, False]), norm="l2")
    assert torch.allclose(out2, torch.tensor([0.021**2 / 63, 0.0]), atol=1e-8)
    out.sum().backward()
    assert torch.isfinite(pred.grad).all()


# ----------------------------------------------------------------------------- appearance


def test_reliability_weight():
    conf = torch.full((3, NUM_JOINTS), 0.5)
    conf[1, 7] = 0.05
    conf[2, 0] = 0.1  # exactly at the threshold: not reliable (the reference: min conf > 0.1)
    w = T.reliability_weight(conf)
    assert float(w[0]) == pytest.approx(0.5)
    assert float(w[1]) == 0.0 and float(w[2]) == 0.0
    conf[2, 0] = 0.11
    assert float(T.reliability_weight(conf)[2]) == pytest.approx((20 * 0.5 + 0.11) / 21)


def _scene(b: int = 2, h: int = 16, w: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(b, h, w, 3, generator=g)
    sil = torch.zeros(b, h, w)
    sil[:, 4:12, 5:11] = 1.0  # hard silhouette
    render = image.clone()
    render[sil == 0] = 1.0  # the renderer's white background
    return render, image, sil


def test_photometric_zero_when_render_matches_inside_and_ignores_background():
    render, image, sil = _scene()  # 16 x 16 images, silhouette 8 x 6 = 48 pixels
    assert torch.allclose(T.photometric_loss(render, image, sil), torch.zeros(2))
    render2 = render.clone()
    render2[sil > 0] += 0.2
    base = T.photometric_loss(render2, image, sil)
    # the reference's mean over ALL pixels (and channels): 0.2 on 48 of 256 pixels
    assert torch.allclose(base, torch.full((2,), 0.2 * 48 / 256), atol=1e-6)
    image_bg = image.clone()
    image_bg[sil == 0] = torch.rand(int((sil == 0).sum()), 3)  # new background: no change
    assert torch.allclose(T.photometric_loss(render2, image_bg, sil), base)


def test_photometric_soft_silhouette():
    render, image, _ = _scene()
    render = image + 0.1
    sil = torch.full(image.shape[:3], 0.5)
    assert torch.allclose(T.photometric_loss(render, image, sil), torch.full((2,), 0.05), atol=1e-6)
    assert torch.allclose(T.photometric_loss(render, image, torch.zeros_like(sil)), torch.zeros(2))


def test_mean_rgb_loss():
    render, image, sil = _scene()
    inside = sil > 0
    shuffled = render.clone()
    for b in range(2):  # per sample: same mean colour, different layout
        pix = shuffled[b][inside[b]]
        shuffled[b][inside[b]] = pix[torch.randperm(pix.shape[0])]
    assert not torch.allclose(shuffled, render)
    assert torch.allclose(T.mean_rgb_loss(shuffled, image, sil), torch.zeros(2), atol=1e-6)
    shifted = render.clone()
    shifted[inside] += torch.tensor([0.1, 0.2, 0.3])
    # one mean over all pixels and channels: (0.1 + 0.2 + 0.3) / 3 on 48 of 256 pixels
    assert torch.allclose(T.mean_rgb_loss(shifted, image, sil), torch.full((2,), 0.2 * 48 / 256), atol=1e-6)
    image_bg = image.clone()
    image_bg[~inside] = 0.0
    assert torch.allclose(T.mean_rgb_loss(shifted, image_bg, sil), torch.full((2,), 0.2 * 48 / 256), atol=1e-6)
    opposite = render.clone()
    opposite[inside] += torch.tensor([0.1, -0.1, 0.0])  # channels cancel in the reference's single mean
    assert torch.allclose(T.mean_rgb_loss(opposite, image, sil), torch.zeros(2), atol=1e-6)


def test_texture_outlier_loss():
    uniform = torch.tensor([0.78, 0.59, 0.59]).expand(2, 50, 3).clone()
    assert torch.allclose(T.texture_outlier_loss(uniform), torch.zeros(2))
    tex = torch.zeros(1, 10, 3)
    tex[0, 0, 0] = 1.0  # mean 0.1, std sqrt(0.9 / 9) = 0.316 -> band 0.1 +- 0.632: the 1.0 is out
    # and costs its distance to the mean, 0.9 (the reference), over 10 x 3 entries
    assert torch.allclose(T.texture_outlier_loss(tex), torch.tensor([0.9 / 30]), atol=1e-6)
    spread = torch.linspace(0, 1, 10).view(1, 10, 1).expand(1, 10, 3)  # nothing beyond 2 std
    assert float(T.texture_outlier_loss(spread)) == 0.0


def test_ssim_loss_masked():
    render, image, sil = _scene(h=24, w=24)
    sil = torch.zeros_like(sil)
    sil[:, 6:18, 6:18] = 1.0
    render = image.clone()
    render[sil == 0] = 1.0
    assert torch.allclose(T.ssim_loss(render, image, sil), torch.zeros(2), atol=1e-5)
    image_bg = image.clone()
    image_bg[sil == 0] = 0.3
    noisy = (render + 0.3 * torch.randn_like(render)).clamp(0, 1)
    base = T.ssim_loss(noisy, image, sil)
    assert (base > 0.05).all()
    assert torch.allclose(T.ssim_loss(noisy, image_bg, sil), base)


def test_silhouette_loss():
    sil = torch.ones(2, 8, 8, requires_grad=True)
    mask = torch.zeros(2, 8, 8)
    mask[:, :4] = 1.0
    mask[1] = float("nan")
    out = T.silhouette_loss(sil, mask, torch.tensor([True, False]))
    assert torch.allclose(out, torch.tensor([0.5, 0.0]))
    out.sum().backward()
    assert torch.isfinite(sil.grad).all()


# ----------------------------------------------------------------------------- mesh Laplacian


def test_cotangent_laplacian_right_triangle_by_hand():
    # angles 90 deg at v0 (cot 0), 45 deg at v1 and v2 (cot 1): edge weights (cot / 2) v1v2 0, v2v0 and
    # v0v1 0.5 -> L x_0 = 0.5 (v1 - v0) + 0.5 (v2 - v0), L x_1 = 0.5 (v0 - v1), L x_2 = 0.5 (v0 - v2)
    v = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=torch.float64)
    f = torch.tensor([[0, 1, 2]])
    assert torch.allclose(cotangent_weights(v[None], f), torch.tensor([[[0.0, 0.5, 0.5]]], dtype=torch.float64))
    lap = CotangentLaplacian(f, 3)
    assert torch.allclose(lap(v), torch.tensor([[0.5, 0.5, 0], [-0.5, 0, 0], [0, -0.5, 0]], dtype=torch.float64))
    want = (math.sqrt(0.5) + 0.5 + 0.5) / 3  # mean over the vertices of |L x| (not squared)
    assert torch.allclose(T.laplacian_loss(v[None], lap), torch.tensor([want], dtype=torch.float64))


@pytest.mark.parametrize("h", [0.5, 1.0, 2.0])
def test_cotangent_laplacian_pyramid_apex_closed_form(h):
    # apex (0, 0, h) over the square (+-1, 0, 0), (0, +-1, 0): each apex edge's two opposite angles have
    # cot = 1 / sqrt(2 h^2 + 1), so w = cot and L x_apex = w * sum(ring - apex) = (0, 0, -4 h w)
    v = torch.tensor([[0, 0, h], [1, 0, 0], [0, 1, 0], [-1, 0, 0], [0, -1, 0]], dtype=torch.float64)
    f = torch.tensor([[0, 1, 2], [0, 2, 3], [0, 3, 4], [0, 4, 1]])
    apex = CotangentLaplacian(f, 5)(v)[0]
    assert torch.allclose(apex, torch.tensor([0.0, 0.0, -4 * h / math.sqrt(2 * h * h + 1)], dtype=torch.float64))


def test_cotangent_laplacian_zero_on_flat_grid_interior_and_similarity_covariant():
    n = 5
    verts, faces = _grid(n)
    verts = verts.double() * torch.tensor([1.0, 1.7, 1.0], dtype=torch.float64)  # non-square cells
    lap = CotangentLaplacian(faces, n * n)
    lv = lap(verts)
    interior = torch.tensor([0 < i < n - 1 and 0 < j < n - 1 for i in range(n) for j in range(n)])
    assert torch.allclose(lv[interior], torch.zeros(int(interior.sum()), 3, dtype=torch.float64), atol=1e-12)
    assert lv[~interior].norm(dim=-1).max() > 0.1  # the boundary is not flat "inside" a surface
    bumped = verts.clone()
    bumped[2 * n + 2, 2] = 0.3
    assert T.laplacian_loss(bumped[None], lap) > T.laplacian_loss(verts[None], lap)
    R = torch.linalg.matrix_exp(torch.tensor([[0, -0.4, 0.2], [0.4, 0, -0.1], [-0.2, 0.1, 0]], dtype=torch.float64))
    moved = 0.3 * bumped @ R.T + torch.tensor([0.1, -2.0, 0.5], dtype=torch.float64)
    assert torch.allclose(lap(moved), 0.3 * lap(bumped) @ R.T, atol=1e-12)  # L(s R x + t) = s R L(x)


def test_cotangent_weights_from_first_mesh_or_each():
    verts, faces = _grid(4)
    g = torch.Generator().manual_seed(0)
    a, b, c = (verts.double() + 0.3 * torch.rand(16, 3, generator=g, dtype=torch.float64) for _ in range(3))
    first = CotangentLaplacian(faces, 16)  # the reference: the batch's first mesh weights every sample
    each = CotangentLaplacian(faces, 16, weights_from="each")
    assert torch.allclose(first(torch.stack([a, b]))[1] + first(torch.stack([a, c]))[1],
                          first(torch.stack([a, b + c]))[1], atol=1e-12)  # linear in b: a's weights
    assert torch.allclose(each(torch.stack([a, b]))[1], each(b), atol=1e-12)
    assert not torch.allclose(first(torch.stack([a, b]))[1], each(b))
    # the weights are constants: the gradient of sum(L x . g) is L^T g = L g (L symmetric)
    x = b.clone().requires_grad_()
    gvec = torch.rand(16, 3, generator=g, dtype=torch.float64)
    (each(x) * gvec).sum().backward()
    assert torch.allclose(x.grad, _apply_weights_of(b, faces, gvec), atol=1e-12)


def _apply_weights_of(mesh, faces, x):
    """L(mesh) applied to x, assembled densely from cotangent_weights (for the gradient check)."""
    w = cotangent_weights(mesh[None], faces)[0]
    L = torch.zeros(16, 16, dtype=torch.float64)
    for fi, (p, q, r) in enumerate(faces.tolist()):
        for k, (i, j) in enumerate(((q, r), (r, p), (p, q))):
            L[i, j] += w[fi, k]
            L[j, i] += w[fi, k]
    L -= torch.diag(L.sum(1))
    return L @ x


def test_laplacian_vertex_count_agnostic_and_checks():
    lap = CotangentLaplacian(torch.tensor([[0, 1, 2]]), 5)  # vertices 3, 4 are used by no face
    v = torch.rand(2, 5, 3)
    assert (lap(v)[:, 3:] == 0).all()
    degenerate = torch.zeros(1, 5, 3)  # all corners coincide: weights 0, not inf / NaN
    assert torch.equal(lap(degenerate), torch.zeros(1, 5, 3))
    with pytest.raises(ValueError, match="num_verts=2"):
        CotangentLaplacian(torch.tensor([[0, 1, 2]]), 2)
    with pytest.raises(ValueError, match=r"\(B, 5, 3\)"):
        lap(torch.rand(2, 4, 3))
    with pytest.raises(ValueError, match="integer"):
        CotangentLaplacian(torch.zeros(4, 3), 5)
    with pytest.raises(ValueError, match="weights_from"):
        CotangentLaplacian(torch.tensor([[0, 1, 2]]), 5, weights_from="template")


# ----------------------------------------------------------------------------- objective


def _inputs(b: int = 2, seed: int = 0, requires_grad: bool = False) -> LossInputs:
    g = torch.Generator().manual_seed(seed)
    det = _skeleton(b, seed)
    n = 4
    grid, _ = _grid(n)

    def p(x):
        return x.clone().requires_grad_(requires_grad)

    render, image, sil = _scene(b, 16, 16, seed)
    return LossInputs(
        kp2d_proj=p(det + torch.randn(b, NUM_JOINTS, 2, generator=g) * 4),
        joints3d=p(torch.rand(b, NUM_JOINTS, 3, generator=g) * 0.1 + torch.tensor([0, 0, 0.6])),
        verts=p(grid.expand(b, -1, -1) * 0.01 + torch.rand(b, n * n, 3, generator=g) * 0.002),
        betas=p(torch.randn(b, 10, generator=g)),
        pose_violation=p(torch.rand(b, 15, 3, generator=g) * 0.1),
        kp2d_stages=[p(det + torch.randn(b, NUM_JOINTS, 2, generator=g) * 3) for _ in range(2)],
        texture=p(torch.rand(b, n * n, 3, generator=g)),
        render_rgb=p((render + 0.05 * torch.randn(render.shape, generator=g)).clamp(0, 1)),
        render_silhouette=p(sil * 0.9 + 0.05),
        image=image,
        mask=(sil > 0).float(),
        has_mask=torch.ones(b, dtype=torch.bool),
        det_uv=det,
        det_conf=0.3 + 0.7 * torch.rand(b, NUM_JOINTS, generator=g),
        appearance_weight=torch.ones(b),
        gt_joints3d=torch.rand(b, NUM_JOINTS, 3, generator=g) * 0.1,
        has_3d=torch.ones(b, dtype=torch.bool),
        names=[f"img_{i:03d}" for i in range(b)],
    )


def _objective(**kw) -> SSLObjective:
    obj = SSLObjective(**kw)
    _, faces = _grid(4)
    obj.set_mesh(faces, 16)
    return obj


ALL_ON = dict(w_ssim=1e-3, w_silhouette=0.1, w_sup_3d=1.0)


def test_objective_total_is_weighted_sum_of_terms():
    obj = _objective(**ALL_ON)
    x = _inputs()
    total, logs = obj(x, TERM_NAMES)
    assert set(logs) == set(TERM_NAMES)
    assert torch.allclose(total, sum(obj.weights[k] * logs[k] for k in TERM_NAMES))
    # spot-check the batch averaging against the term functions: appearance terms by texture_con^2
    rel = T.reliability_weight(x.det_conf)
    photo = T.photometric_loss(x.render_rgb, x.image, x.render_silhouette)
    assert torch.allclose(logs["photo"], (photo * rel**2).sum() / (rel**2).sum())
    # bone direction: the reference's mean over B x 20 confidence-weighted bones
    ub = lambda v: v / v.norm(dim=-1, keepdim=True)  # noqa: E731
    bp, bc = [p for p, _ in BONES], [c for _, c in BONES]
    d = ((ub(x.kp2d_proj[:, bc] - x.kp2d_proj[:, bp]) - ub(x.det_uv[:, bc] - x.det_uv[:, bp]))**2).sum(-1)
    assert torch.allclose(logs["bone_dir"], (d * x.det_conf[:, bp] * x.det_conf[:, bc]).mean(), atol=1e-6)
    assert torch.allclose(logs["shape"], T.shape_loss(x.betas).mean())
    # kp2d per-sample values averaged with the per-sample keypoint-weight sums equal the
    # reference's batch-wide normalisation sum(w * err) / sum(w)
    w = T.keypoint_weights(x.det_conf)
    err = T.robust_px((x.kp2d_proj - x.det_uv).norm(dim=-1))
    assert torch.allclose(logs["kp2d"], (w * err).sum() / w.sum())


def test_objective_appearance_weighting_drops_unreliable_samples():
    obj = _objective()
    x = _inputs(b=2)
    _, logs = obj(x, ["photo", "mean_rgb", "tex_reg"])
    x.det_conf = x.det_conf.clone()
    x.det_conf[1, 3] = 0.01  # sample 1 unreliable ...
    x.image = x.image.clone()
    x.image[1] = 0.0  # ... so its (now very different) image does not count
    x.texture = x.texture.clone()
    x.texture[1, 0] = 50.0
    _, logs2 = obj(x, ["photo", "mean_rgb", "tex_reg"])
    x1 = _inputs(b=2)
    sample0 = T.photometric_loss(x1.render_rgb[:1], x1.image[:1], x1.render_silhouette[:1])
    assert torch.allclose(logs2["photo"], sample0[0])
    assert float(logs2["tex_reg"]) == pytest.approx(float(T.texture_outlier_loss(x1.texture[:1])))
    x.appearance_weight = torch.tensor([0.0, 1.0])  # and with no weight left at all: 0
    _, logs3 = obj(x, ["photo"])
    assert float(logs3["photo"]) == 0.0


def test_objective_appearance_weights_are_squared_originals_1_1_augmented_0_1():
    obj = _objective()
    x = _inputs(b=2)
    x.det_conf = torch.full((2, NUM_JOINTS), 0.5)  # texture_con = 0.5 x 1.1 and 0.5 x 0.1
    x.appearance_weight = torch.tensor([1.1, 0.1])
    _, logs = obj(x, ["photo"])
    photo = T.photometric_loss(x.render_rgb, x.image, x.render_silhouette)
    w = torch.tensor([0.55**2, 0.05**2])  # 121 : 1
    assert torch.allclose(logs["photo"], (photo * w).sum() / w.sum())


def test_weight_zero_or_inactive_removes_term_and_its_inputs():
    obj = _objective(w_photo=0.0, w_mean_rgb=0.0, w_tex_reg=0.0, w_laplacian=0.0, w_hm=0.0, w_kp_cons=0.0)
    x = _inputs()
    for f in ("render_rgb", "render_silhouette", "image", "texture", "verts", "kp2d_stages", "mask"):
        setattr(x, f, None)
    total, logs = obj(x, TERM_NAMES)
    assert set(logs) == {"kp2d", "bone_dir", "pose_prior", "scale", "shape"}
    assert torch.isfinite(total)
    # inactive terms are not computed either, even with a weight
    total, logs = SSLObjective()(LossInputs(pose_violation=torch.zeros(1, 15, 3)), ["tsa_poses"])
    assert set(logs) == {"pose_prior"} and float(total) == 0.0
    # an active, weighted term whose input is missing: a clear error naming it
    with pytest.raises(ValueError, match=r"'photo' \(texture\).*LossInputs.render_rgb"):
        _objective()(x, ["photo"])
    with pytest.raises(ValueError, match="set_mesh"):
        SSLObjective()(_inputs(), ["laplacian"])
    with pytest.raises(ValueError, match="unknown loss term 'foo'"):
        obj(x, ["foo"])


def test_objective_accepts_method_names():
    obj = _objective()
    x = _inputs()
    _, a = obj(x, ["tsa_poses", "open_2dj", "mscale", "open_bone_direc"])
    _, b = obj(x, ["pose_prior", "kp2d", "scale", "bone_dir"])
    assert set(a) == set(b) == {"pose_prior", "kp2d", "scale", "bone_dir"}
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert set(METHOD_NAMES) == set(TERM_NAMES)


def test_objective_gradients_flow_and_are_finite():
    obj = _objective(**ALL_ON)
    x = _inputs(requires_grad=True)
    total, logs = obj(x, TERM_NAMES)
    assert all(not v.requires_grad for v in logs.values())  # logs are detached
    total.backward()
    for f in ("kp2d_proj", "joints3d", "verts", "betas", "pose_violation", "texture", "render_rgb",
              "render_silhouette"):
        g = getattr(x, f).grad
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, f
    for s in x.kp2d_stages:
        assert torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0


def test_objective_laplacian_term_on_a_hand_worked_mesh():
    v = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]])
    obj = SSLObjective()
    obj.set_mesh(torch.tensor([[0, 1, 2]]), 3)
    _, logs = obj(LossInputs(verts=torch.stack([v, 2 * v])), ["triangle"])
    # |L x| scales with the mesh: sample 2 costs twice sample 1; batch mean 1.5 x 0.569
    assert float(logs["laplacian"]) == pytest.approx(1.5 * (math.sqrt(0.5) + 1.0) / 3, rel=1e-6)
    with pytest.raises(ValueError, match="laplacian_weights"):
        SSLObjective(laplacian_weights="template")


def test_nonfinite_raise_names_term_and_sample():
    obj = _objective()
    x = _inputs(b=3)
    x.names = ["a.jpg", "b.jpg", "c.jpg"]
    x.joints3d = x.joints3d.clone()
    x.joints3d[1, 9, 0] = float("nan")
    with pytest.raises(NonFiniteLossError, match=r"'scale'.*b\.jpg") as e:
        obj(x, TERM_NAMES)
    assert e.value.term == "scale" and e.value.names == ["b.jpg"]


def test_nonfinite_skip_returns_none_and_flag():
    obj = _objective(nonfinite="skip")
    x = _inputs()
    x.betas = x.betas.clone()
    x.betas[0, 0] = float("inf")
    total, logs = obj(x, TERM_NAMES)
    assert total is None and logs["nonfinite_term"] == "shape"
    x2 = _inputs()
    total, logs = obj(x2, TERM_NAMES)
    assert total is not None and "nonfinite_term" not in logs


def test_objective_rejects_bad_settings():
    with pytest.raises(ValueError, match="w_photo"):
        SSLObjective(w_photo=-1.0)
    with pytest.raises(ValueError, match="nonfinite"):
        SSLObjective(nonfinite="ignore")


def test_config_matches_class_defaults():
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(ROOT / "conf" / "loss" / "s2hand.yaml")
    defaults = {k: p.default for k, p in inspect.signature(SSLObjective.__init__).parameters.items() if k != "self"}
    assert set(cfg.keys()) - {"_target_"} == set(defaults)
    for k, v in defaults.items():
        assert cfg[k] == v or (isinstance(v, float) and math.isclose(cfg[k], v)), k
    obj = instantiate(cfg)
    assert isinstance(obj, SSLObjective) and obj.weights == SSLObjective().weights


def test_vanishing_silhouette_gives_finite_gradients():
    """A soft silhouette of ~1e-30 everywhere (the hand left the image) must not produce inf/NaN
    gradients through the masked means (a real divergence seen in training)."""
    from handrecon.losses import terms

    rgb = torch.rand(2, 8, 8, 3, requires_grad=True)
    img = torch.rand(2, 8, 8, 3)
    sil = torch.full((2, 8, 8), 1e-32, requires_grad=True)
    loss = (terms.mean_rgb_loss(rgb, img, sil) + terms.photometric_loss(rgb, img, sil)).sum()
    loss.backward()
    assert torch.isfinite(rgb.grad).all() and torch.isfinite(sil.grad).all()
    assert abs(float(loss.detach())) < 1e-30  # ~ the silhouette itself
