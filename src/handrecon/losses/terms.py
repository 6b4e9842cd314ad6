"""Every loss term of the method as a small pure function.

Each term returns a PER-SAMPLE tensor (B,) so that :class:`handrecon.losses.objective.SSLObjective`
can average samples with the weights the method prescribes. Units: 2D quantities are pixels of
the crop, 3D quantities metres, colours in [0, 1]. Images are channels-last (B, H, W, 3).

The reference-config name of each term is given in its docstring (open_2dj, tsa_poses, ...).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from handrecon.joints import BONES, FINGERTIPS, NUM_JOINTS, WRIST

#: bone endpoints as index tensors (parent, child), canonical joint order
_BONE_PARENT = torch.tensor([p for p, _ in BONES], dtype=torch.long)  # (20,)
_BONE_CHILD = torch.tensor([c for _, c in BONES], dtype=torch.long)  # (20,)


# ----------------------------------------------------------------------------- helpers


def _check(name: str, t: Tensor, shape: Sequence[int | None]) -> None:
    """Raise a ValueError naming ``name`` unless ``t`` has ``shape`` (None = any size)."""
    if not torch.is_tensor(t):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != len(shape) or any(s is not None and s != d for s, d in zip(shape, t.shape)):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {want}, got {tuple(t.shape)}")


def safe_divide(num: Tensor, den: Tensor, eps: float = 1e-6) -> Tensor:
    """num / den with 0 where den <= eps (a sample with no weight contributes 0, never NaN).

    The threshold is not 0: a vanishing but positive weight sum (a soft silhouette of a hand that
    left the image, ~1e-30) makes d(num/den)/d(den) = -num/den^2 overflow to inf in the backward.
    """
    ok = den > eps
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(num))


def weighted_mean(values: Tensor, weights: Tensor, dim: int = -1) -> Tensor:
    """sum(w * v) / sum(w) along ``dim``; 0 where all weights are 0; entries with w == 0 are ignored
    even when non-finite (a keypoint/sample that does not count cannot poison the result)."""
    values = torch.where(weights > 0, values, torch.zeros_like(values))
    return safe_divide((values * weights).sum(dim), weights.sum(dim))


def robust_px(d: Tensor, beta: float = 5.0) -> Tensor:
    """Huber-style smoothing of a non-negative distance d (px), elementwise.

    d^2 / (2 beta) for d < beta, else d - beta / 2: continuous with a continuous first derivative
    at d = beta (both pieces equal beta / 2 with slope 1 there). beta = 5 gives the method's
    d^2 / 10 and d - 2.5.
    """
    if beta <= 0:
        raise ValueError(f"robust_px: beta must be positive, got {beta}")
    return torch.where(d < beta, d * d / (2.0 * beta), d - beta / 2.0)


def default_joint_weight(wrist: float = 2.0, tip: float = 1.5) -> Tensor:
    """(21,) per-keypoint importance of open_2dj: 2 for the wrist, 1.5 for the fingertips, 1 otherwise."""
    w = torch.ones(NUM_JOINTS)
    w[WRIST] = wrist
    w[list(FINGERTIPS)] = tip
    return w


def keypoint_weights(conf: Tensor, joint_weight: Tensor | None = None) -> Tensor:
    """(B, 21) weights (c * w)^2 of open_2dj from confidences conf (B, 21) and joint_weight (21,)."""
    if joint_weight is None:
        joint_weight = default_joint_weight()
    return (conf * joint_weight.to(conf))**2


def bone_weights(conf: Tensor) -> Tensor:
    """(B, 20) weights of open_bone_direc: product of the confidences of each bone's two endpoints."""
    idx_p, idx_c = _BONE_PARENT.to(conf.device), _BONE_CHILD.to(conf.device)
    return conf.index_select(-1, idx_p) * conf.index_select(-1, idx_c)


def _drop_unused(x: Tensor, weight: Tensor) -> Tensor:
    """x (B, K, D) with rows of weight (B, K) == 0 replaced by 0, so a label that does not count
    (e.g. a NaN detection with confidence 0) cannot make a NaN gradient through torch.where."""
    return torch.where((weight > 0).unsqueeze(-1), x, torch.zeros_like(x))


def _distance(a: Tensor, b: Tensor) -> Tensor:
    # vector_norm has a zero (not NaN) subgradient at 0, so pred == det is safe to differentiate
    return torch.linalg.vector_norm(a - b, dim=-1)


# ----------------------------------------------------------------------------- 2D keypoint terms


def kp2d_loss(pred_uv: Tensor, det_uv: Tensor, conf: Tensor, joint_weight: Tensor | None = None,
              beta: float = 5.0) -> Tensor:
    """open_2dj: projected 3D joints vs offline detections -> (B,).

    pred_uv, det_uv: (B, 21, 2) px; conf: (B, 21); joint_weight: (21,) (default
    :func:`default_joint_weight`). Per keypoint robust_px(|pred - det|) weighted by (c * w)^2,
    normalised by the sample's sum of weights (0 for a sample whose weights are all 0).
    """
    _check("kp2d_loss pred_uv", pred_uv, (None, NUM_JOINTS, 2))
    _check("kp2d_loss det_uv", det_uv, tuple(pred_uv.shape))
    _check("kp2d_loss conf", conf, tuple(pred_uv.shape[:2]))
    w = keypoint_weights(conf, joint_weight)  # (B, 21)
    err = robust_px(_distance(pred_uv, _drop_unused(det_uv, w)), beta)  # (B, 21)
    return weighted_mean(err, w)


def _unit(v: Tensor, eps: float = 1e-3) -> Tensor:
    # smooth everywhere: a zero-length bone maps to the zero vector with a finite gradient
    return v * torch.rsqrt((v * v).sum(-1, keepdim=True) + eps * eps)


def bone_vectors(uv: Tensor) -> Tensor:
    """(B, 20, D) child - parent for the 20 bones of handrecon.joints.BONES, from (B, 21, D)."""
    idx_p, idx_c = _BONE_PARENT.to(uv.device), _BONE_CHILD.to(uv.device)
    return uv.index_select(-2, idx_c) - uv.index_select(-2, idx_p)


def bone_direction_loss(pred_uv: Tensor, det_uv: Tensor, conf: Tensor) -> Tensor:
    """open_bone_direc: 2D bone directions of the projection vs the detection -> (B,).

    pred_uv, det_uv: (B, 21, 2) px; conf: (B, 21). For each of the 20 bones the squared difference
    of the unit directions (in [0, 4]), weighted by the product of the endpoint confidences, then
    the MEAN over the 20 bones (as the reference: not divided by the sum of the weights; the batch
    mean of this is the reference's mean over B x 20 bones). Invariant to the scale and position of
    either skeleton.
    """
    _check("bone_direction_loss pred_uv", pred_uv, (None, NUM_JOINTS, 2))
    _check("bone_direction_loss det_uv", det_uv, tuple(pred_uv.shape))
    _check("bone_direction_loss conf", conf, tuple(pred_uv.shape[:2]))
    det_uv = _drop_unused(det_uv, conf)
    diff = _unit(bone_vectors(pred_uv)) - _unit(bone_vectors(det_uv))  # (B, 20, 2)
    w = bone_weights(conf)  # (B, 20)
    err = (diff * diff).sum(-1)
    return torch.where(w > 0, err * w, torch.zeros_like(err)).mean(-1)


def heatmap_integral_loss(stage_uv: Sequence[Tensor], det_uv: Tensor, conf: Tensor) -> Tensor:
    """hm_integral: soft-argmax keypoints of every hourglass stage vs the detections -> (B,).

    stage_uv: list of (B, 21, 2) px, one per stage; det_uv: (B, 21, 2); conf: (B, 21). Per stage
    the Euclidean distance weighted by c^2 and normalised per sample; the stages are summed.
    """
    if len(stage_uv) == 0:
        raise ValueError("heatmap_integral_loss: stage_uv is empty (expected one (B, 21, 2) per stage)")
    _check("heatmap_integral_loss det_uv", det_uv, (None, NUM_JOINTS, 2))
    _check("heatmap_integral_loss conf", conf, tuple(det_uv.shape[:2]))
    w = conf * conf  # (B, 21)
    det_uv = _drop_unused(det_uv, w)
    total = det_uv.new_zeros(det_uv.shape[0])
    for s, uv in enumerate(stage_uv):
        _check(f"heatmap_integral_loss stage_uv[{s}]", uv, tuple(det_uv.shape))
        total = total + weighted_mean(_distance(uv, det_uv), w)
    return total


def kp_consistency_loss(branch_uv: Tensor, proj_uv: Tensor, beta: float = 5.0) -> Tensor:
    """kp_cons: 2D branch (last stage) vs projected 3D joints, robust_px averaged over joints -> (B,).

    branch_uv, proj_uv: (B, 21, 2) px. Both sides receive gradients (mutual 2D-3D consistency).
    """
    _check("kp_consistency_loss branch_uv", branch_uv, (None, NUM_JOINTS, 2))
    _check("kp_consistency_loss proj_uv", proj_uv, tuple(branch_uv.shape))
    return robust_px(_distance(branch_uv, proj_uv), beta).mean(-1)


def kp2d_gt_loss(pred_uv: Tensor, gt_uv: Tensor, has_2d: Tensor | None = None, beta: float = 5.0) -> Tensor:
    """Supervised 2D keypoints (semi-supervised ablations only): robust_px averaged -> (B,).

    pred_uv, gt_uv: (B, 21, 2) px; has_2d: (B,) bool/0-1, samples without labels give 0 (their
    label tensor may hold anything, even NaN).
    """
    _check("kp2d_gt_loss pred_uv", pred_uv, (None, NUM_JOINTS, 2))
    _check("kp2d_gt_loss gt_uv", gt_uv, tuple(pred_uv.shape))
    if has_2d is None:
        return robust_px(_distance(pred_uv, gt_uv), beta).mean(-1)
    has = has_2d.bool()
    gt_uv = torch.where(has[:, None, None], gt_uv, pred_uv.detach())  # unlabelled: 0, finite grads
    return robust_px(_distance(pred_uv, gt_uv), beta).mean(-1) * has.to(pred_uv.dtype)


# ----------------------------------------------------------------------------- 3D / model priors


def pose_prior_loss(violation: Tensor, z_weight: float = 2.0, rows: int = 16) -> Tensor:
    """tsa_poses: the reference's pose prior -> (B,).

    violation: (B, 15, 3) non-negative amounts (radians) by which each finger joint's raw MANO
    axis-angle components [x, y, z] lie outside the reference's box (0 inside; computed by
    handrecon.models.anatomy.pose_violation). The z column is weighted ``z_weight`` (2 in the
    reference), then the sum is divided by ``rows`` x 3: the reference averages over 16 x 3 values
    whose root row (its fixed root rotation, always inside its box) is 0. Linear outside the box.
    """
    _check("pose_prior_loss violation", violation, (None, 15, 3))
    if rows < 15:
        raise ValueError(f"pose_prior_loss: rows must be >= 15, got {rows}")
    col = violation.new_tensor([1.0, 1.0, float(z_weight)])
    return (violation * col).sum(dim=(-2, -1)) / (3.0 * rows)


def scale_loss(joints3d: Tensor, ref_length: float = 0.0282, bone: tuple[int, int] = (9, 10)) -> Tensor:
    """mscale: |length of one reference bone - ref_length| (metres) -> (B,).

    joints3d: (B, 21, 3) camera frame, metres. Default bone: middle knuckle (9) to the middle
    finger's first joint (10), 28.2 mm, which fixes the single-image scale ambiguity.
    """
    _check("scale_loss joints3d", joints3d, (None, NUM_JOINTS, 3))
    a, b = bone
    return (_distance(joints3d[:, a], joints3d[:, b]) - ref_length).abs()


def shape_loss(betas: Tensor) -> Tensor:
    """mshape: squared norm of the MANO shape betas (B, K), divided by K -> (B,).

    Mean of squares (= |beta|^2 / K) so that the method's weight 1e-2 keeps the strength it has in
    the reference (which used a mean squared error).
    """
    _check("shape_loss betas", betas, (None, None))
    return (betas * betas).mean(-1)


def laplacian_loss(verts: Tensor, lap) -> Tensor:
    """triangle: mean over the vertices of the norm (not squared) of the mesh Laplacian -> (B,).

    verts: (B, V, 3) the predicted mesh (camera frame, metres, as the reference); lap: a
    :class:`handrecon.losses.mesh.CotangentLaplacian` (or any callable (B, V, 3) -> (B, V, 3)).
    The reference's value: ``|L x_i|`` averaged over the B x V vertices (the batch mean of this).
    It penalises curvature (spikes, crumples) linearly; even the rest hand has a non-zero cost.
    """
    _check("laplacian_loss verts", verts, (None, None, 3))
    return torch.linalg.vector_norm(lap(verts), dim=-1).mean(-1)


def joints3d_loss(pred: Tensor, gt: Tensor, has_3d: Tensor | None = None, root: int = 9,
                  norm: str = "l1") -> Tensor:
    """Supervised 3D joints (semi-supervised ablations only), root-relative -> (B,).

    pred, gt: (B, 21, 3) metres; both are made relative to joint ``root`` (default the middle
    knuckle, as the reference's normalised 3D loss). norm "l1": mean absolute coordinate error;
    "l2": mean squared coordinate error. Samples with has_3d False give 0 (their labels may be NaN).
    """
    _check("joints3d_loss pred", pred, (None, NUM_JOINTS, 3))
    _check("joints3d_loss gt", gt, tuple(pred.shape))
    if norm not in ("l1", "l2"):
        raise ValueError(f"joints3d_loss: norm must be 'l1' or 'l2', got {norm!r}")
    if has_3d is not None:  # unlabelled samples: compare with themselves (0, finite gradients)
        gt = torch.where(has_3d.bool()[:, None, None], gt, pred.detach())
    d = (pred - pred[:, root : root + 1]) - (gt - gt[:, root : root + 1])
    return d.abs().mean(dim=(-2, -1)) if norm == "l1" else (d * d).mean(dim=(-2, -1))


# ----------------------------------------------------------------------------- appearance terms


def reliability_weight(conf: Tensor, threshold: float = 0.1) -> Tensor:
    """(B,) detection reliability from conf (B, 21): the mean confidence, 0 unless every keypoint's
    confidence is above ``threshold`` (the reference's ``texture_con``; the objective squares it)."""
    _check("reliability_weight conf", conf, (None, None))
    ok = (conf > threshold).all(-1)
    return torch.where(ok, conf.mean(-1), torch.zeros_like(conf[:, 0]))


def _check_images(fn: str, render: Tensor, image: Tensor, silhouette: Tensor) -> None:
    _check(f"{fn} render_rgb", render, (None, None, None, 3))
    _check(f"{fn} image", image, tuple(render.shape))
    _check(f"{fn} silhouette", silhouette, tuple(render.shape[:3]))


def photometric_loss(render_rgb: Tensor, image: Tensor, silhouette: Tensor) -> Tensor:
    """texture: L1 between the rendering composited over the image and the image -> (B,).

    render_rgb, image: (B, H, W, 3) in [0, 1]; silhouette: (B, H, W) soft in [0, 1]. The per pixel
    error is ``silhouette x |render - image|`` (= |composite - image| for the composite
    ``silhouette x render + (1 - silhouette) x image``), averaged over ALL pixels and channels as in
    the reference, so the weight 5e-3 keeps its meaning. The reference compared a white-background
    rendering with the image masked by the rendered silhouette, which adds a constant error of 1
    for every background pixel (a known fault): here the background contributes 0. Gradients also
    reach the silhouette.
    """
    _check_images("photometric_loss", render_rgb, image, silhouette)
    return ((render_rgb - image).abs() * silhouette.unsqueeze(-1)).flatten(1).mean(-1)


def mean_rgb_loss(render_rgb: Tensor, image: Tensor, silhouette: Tensor) -> Tensor:
    """mrgb: |mean of the composited rendering - mean of the image| -> (B,).

    render_rgb, image: (B, H, W, 3); silhouette: (B, H, W). As the reference, one mean over all
    pixels and channels of each image, then the absolute difference; the rendering is composited
    over the image (``silhouette x (render - image)``), so, unlike the reference's white
    background, the background adds nothing.
    """
    _check_images("mean_rgb_loss", render_rgb, image, silhouette)
    return ((render_rgb - image) * silhouette.unsqueeze(-1)).flatten(1).mean(-1).abs()


def texture_outlier_loss(texture: Tensor, k: float = 2.0, tol: float = 1e-6) -> Tensor:
    """mtex: penalise texture colours outside the sample's mean +- k std (per channel) -> (B,).

    texture: (B, V, 3) (per vertex or per face colours). As the reference, a colour outside the
    band costs its distance to the MEAN (|colour - mean|, 0 inside the band), averaged over V and
    the channels. Mean and std (unbiased, as torch.std in the reference) are per sample and channel
    and are treated as constants (detached; the reference also differentiates them), so the term
    pulls outliers towards the mean and cannot lower itself by widening the spread. ``tol`` widens
    the band slightly so that float round-off of a constant texture costs 0.
    """
    _check("texture_outlier_loss texture", texture, (None, None, 3))
    mean = texture.mean(1, keepdim=True).detach()  # (B, 1, 3)
    half = k * texture.std(1, keepdim=True).detach() + tol  # (B, 1, 3)
    dev = texture - mean
    outside = dev.abs() > half
    return torch.where(outside, dev.abs(), torch.zeros_like(dev)).mean(dim=(-2, -1))


def ssim_loss(render_rgb: Tensor, image: Tensor, silhouette: Tensor, sigma: float = 1.0) -> Tensor:
    """Optional: 1 - masked SSIM of the rendering vs the image -> (B,).

    Both images are multiplied by the silhouette first (so the background is black in both and
    the image's background cannot change the result), then the SSIM map (Gaussian window of std
    ``sigma`` px, via torchmetrics, data range 1) is averaged over the channels and over the
    silhouette (silhouette-weighted). An empty silhouette gives 0.
    """
    from torchmetrics.functional.image import structural_similarity_index_measure as ssim

    _check_images("ssim_loss", render_rgb, image, silhouette)
    m = silhouette.unsqueeze(-1)
    a = (render_rgb * m).permute(0, 3, 1, 2)  # (B, 3, H, W)
    b = (image * m).permute(0, 3, 1, 2)
    _, full = ssim(a, b, gaussian_kernel=True, sigma=sigma, data_range=1.0, reduction="none",
                   return_full_image=True)
    ssim_map = full.mean(1).flatten(1)  # (B, HW)
    w = silhouette.flatten(1)
    return safe_divide(((1.0 - ssim_map) * w).sum(-1), w.sum(-1))


def silhouette_loss(silhouette: Tensor, mask: Tensor, has_mask: Tensor | None = None) -> Tensor:
    """Optional, datasets with masks: mean |rendered silhouette - mask| -> (B,).

    silhouette, mask: (B, H, W) in [0, 1]; samples with has_mask False give 0 (their mask may hold
    anything).
    """
    _check("silhouette_loss silhouette", silhouette, (None, None, None))
    _check("silhouette_loss mask", mask, tuple(silhouette.shape))
    mask = mask.to(silhouette)
    if has_mask is None:
        return (silhouette - mask).abs().flatten(1).mean(-1)
    has = has_mask.bool()
    mask = torch.where(has[:, None, None], mask, silhouette.detach())  # unlabelled: 0, finite grads
    return (silhouette - mask).abs().flatten(1).mean(-1) * has.to(silhouette.dtype)
