"""A detector-like noise model: turns ground-truth 2D keypoints into OpenPose-like detections.

The synthetic dataset trains the method the way it is trained on real data: from 2D detections
that are noisy, sometimes wrong, sometimes missing, with confidences that say (imperfectly) how
far off they are. Every function here is pure: it gets its randomness from the
``numpy.random.Generator`` passed in and has no other state.

Per keypoint j of an image (all pixel values are for an image of ``reference_size`` pixels and are
scaled by ``image_size / reference_size`` for other sizes):

1. A per-keypoint standard deviation (per axis)::

       sigma_j = sigma_px * d * (tip_factor if j is a fingertip else 1)
                          * (self_occluded_factor if self-occluded)
                          * (occluded_factor if hidden by an occluder or outside the image)

   where ``d`` is a per-image difficulty factor, log-normal with log-std ``difficulty_logstd``
   and mean 1 (so the average visible error is unchanged).
2. The detection is ``xy_j = uv_j + e_j``, ``e_j ~ N(0, sigma_j^2 I_2)``. For a visible,
   non-tip joint with ``d = 1`` the mean error |e_j| is ``sigma_px * sqrt(pi / 2)`` (Rayleigh).
3. The confidence follows the error: ``conf_j = clip(exp(-|e_j|^2 / (2 s^2)) + n_j, conf_min, 1)``
   with ``s = conf_scale_px`` and ``n_j ~ N(0, conf_noise^2)``; occluded joints are additionally
   multiplied by ``occluded_conf_factor`` (detectors are less sure of what they cannot see).
4. Gross outliers, probability ``p_outlier`` per keypoint: with probability ``outlier_swap_prob``
   the detection lands on the same joint of a neighbouring finger (the classic finger confusion;
   the wrist goes to a random place instead), otherwise at a uniformly random position in the
   image. Their confidence is uniform in ``outlier_conf`` -- low-ish, but not always low.
5. Missing keypoints, probability ``p_missing`` per keypoint: ``conf = 0`` and ``xy = (0, 0)``
   (the convention of :mod:`handrecon.data.detections`).

Self-occlusion is decided from the renderer's depth map (:func:`self_occlusion`): a joint is
self-occluded when the nearest surface seen at its projection lies in front of it by more than the
joint's own depth below the skin (its distance to the nearest mesh vertex) plus ``self_occlusion_tol_m``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from handrecon.joints import FINGER_BASES, FINGERTIPS, NUM_JOINTS


@dataclass(frozen=True)
class NoiseModel:
    """Parameters of the detector-like noise (defaults: an OpenPose-like detector on 224 px crops)."""

    #: per-axis Gaussian jitter of a visible, non-fingertip keypoint, pixels (at ``reference_size``)
    sigma_px: float = 2.0
    #: multiplier of sigma for the five fingertips (detectors are least precise there)
    tip_factor: float = 1.5
    #: multiplier of sigma for joints hidden by the hand itself (depth test on the rendering)
    self_occluded_factor: float = 2.0
    #: multiplier of sigma for joints hidden by an occluder or projecting outside the image
    occluded_factor: float = 3.0
    #: log-std of the per-image difficulty factor on sigma (mean-1 log-normal); 0 disables it
    difficulty_logstd: float = 0.2
    #: confidence = exp(-err^2 / (2 conf_scale_px^2)) + noise, pixels (at ``reference_size``)
    conf_scale_px: float = 5.0
    #: std of the additive Gaussian noise on the confidence
    conf_noise: float = 0.08
    #: confidence multiplier of occluded / self-occluded joints
    occluded_conf_factor: float = 0.7
    #: smallest confidence of a detected (not missing) keypoint
    conf_min: float = 0.02
    #: probability that a keypoint is a gross outlier
    p_outlier: float = 0.02
    #: probability that an outlier is the same joint of a neighbouring finger (else random in image)
    outlier_swap_prob: float = 0.5
    #: confidence range (uniform) of outliers
    outlier_conf: tuple[float, float] = (0.1, 0.7)
    #: probability that a keypoint is missing (conf 0, xy 0)
    p_missing: float = 0.01
    #: margin of the self-occlusion depth test, metres
    self_occlusion_tol_m: float = 0.01
    #: image size (pixels) the pixel parameters above refer to
    reference_size: int = 224

    def __post_init__(self) -> None:
        for f in fields(self):  # normalise types (frozen) so equal settings hash equally
            v = getattr(self, f.name)
            try:
                if f.name == "outlier_conf":
                    v = tuple(float(x) for x in v)
                    if len(v) != 2:
                        raise ValueError("not a pair")
                else:
                    v = int(v) if f.name == "reference_size" else float(v)
            except (TypeError, ValueError) as e:
                raise ValueError(f"NoiseModel.{f.name}={getattr(self, f.name)!r} is invalid ({e}); expected "
                                 f"{'a (lo, hi) pair' if f.name == 'outlier_conf' else 'a number'}") from None
            object.__setattr__(self, f.name, v)
        for name in ("sigma_px", "tip_factor", "self_occluded_factor", "occluded_factor", "conf_scale_px",
                     "reference_size"):
            if not getattr(self, name) > 0:
                raise ValueError(f"NoiseModel.{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("difficulty_logstd", "conf_noise", "self_occlusion_tol_m"):
            if getattr(self, name) < 0:
                raise ValueError(f"NoiseModel.{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("p_outlier", "p_missing", "outlier_swap_prob", "occluded_conf_factor", "conf_min"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"NoiseModel.{name} must be in [0, 1], got {getattr(self, name)!r}")
        lo, hi = self.outlier_conf
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"NoiseModel.outlier_conf must be (lo, hi) with 0 <= lo <= hi <= 1, got {self.outlier_conf!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["outlier_conf"] = list(self.outlier_conf)
        return d

    @classmethod
    def from_dict(cls, d: dict | None) -> NoiseModel:
        """Build from a (possibly partial) mapping; unknown keys are an error naming them."""
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown detector-noise option(s) {unknown}; expected some of {sorted(known)}")
        return cls(**d)


#: neighbouring-finger offsets (in canonical joint indices) of each joint; the wrist has none
def _neighbour_table() -> list[tuple[int, ...]]:
    table: list[tuple[int, ...]] = [()]
    for f in range(len(FINGER_BASES)):
        for k in range(4):
            nb = []
            if f > 0:
                nb.append(FINGER_BASES[f - 1] + k)
            if f < len(FINGER_BASES) - 1:
                nb.append(FINGER_BASES[f + 1] + k)
            table.append(tuple(nb))
    assert len(table) == NUM_JOINTS
    return table


NEIGHBOURS: tuple[tuple[int, ...], ...] = tuple(_neighbour_table())
IS_TIP: np.ndarray = np.isin(np.arange(NUM_JOINTS), FINGERTIPS)


def sample_depth(depth: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Depth map (H, W) at keypoints uv (J, 2) by nearest pixel -> (J,); 0 outside the image."""
    H, W = depth.shape
    ij = np.rint(uv).astype(np.int64)  # (J, 2) as (u, v)
    inside = (ij[:, 0] >= 0) & (ij[:, 0] < W) & (ij[:, 1] >= 0) & (ij[:, 1] < H)
    out = np.zeros(len(uv), dtype=np.float64)
    out[inside] = depth[ij[inside, 1], ij[inside, 0]]
    return out


def inside_image(uv: np.ndarray, image_size: int | tuple[int, int]) -> np.ndarray:
    """uv (..., 2) -> (...) bool: inside [-0.5, W - 0.5) x [-0.5, H - 0.5)."""
    H, W = (image_size, image_size) if np.isscalar(image_size) else image_size
    return (uv[..., 0] >= -0.5) & (uv[..., 0] < W - 0.5) & (uv[..., 1] >= -0.5) & (uv[..., 1] < H - 0.5)


def self_occlusion(joint_z: np.ndarray, surface_z: np.ndarray, joint_radius: np.ndarray, tol: float) -> np.ndarray:
    """Which joints are hidden by the hand itself.

    joint_z (J,) joint depth; surface_z (J,) rendered depth at the joint's projection (0: no
    surface); joint_radius (J,) the joint's depth below the skin (distance to the nearest mesh
    vertex). A joint is self-occluded when a surface lies in front of it by more than
    ``joint_radius + tol``. -> (J,) bool.
    """
    return (surface_z > 0) & (surface_z < joint_z - joint_radius - tol)


def joint_radius(joints: np.ndarray, verts: np.ndarray) -> np.ndarray:
    """Distance of each joint (J, 3) to its nearest mesh vertex (V, 3) -> (J,)."""
    d2 = ((joints[:, None, :] - verts[None, :, :]) ** 2).sum(-1)  # (J, V)
    return np.sqrt(d2.min(1))


def joint_sigma(model: NoiseModel, occluded: np.ndarray, self_occluded: np.ndarray, pixel_scale: float = 1.0,
                difficulty: float = 1.0) -> np.ndarray:
    """Per-axis jitter std of each keypoint, pixels: occluded / self_occluded (..., 21) bool -> (..., 21)."""
    s = np.full(np.shape(occluded), model.sigma_px * pixel_scale * difficulty, dtype=np.float64)
    s = s * np.where(IS_TIP, model.tip_factor, 1.0)
    s = s * np.where(self_occluded, model.self_occluded_factor, 1.0)
    s = s * np.where(occluded, model.occluded_factor, 1.0)
    return s


def confidence_from_error(err: np.ndarray, scale_px: float, noise: np.ndarray, conf_min: float) -> np.ndarray:
    """conf = clip(exp(-err^2 / (2 scale^2)) + noise, conf_min, 1). err, noise (...) -> (...)."""
    return np.clip(np.exp(-(err**2) / (2.0 * scale_px**2)) + noise, conf_min, 1.0)


@dataclass
class NoisyDetection:
    """xy (21, 2) px, conf (21,), and what happened to each keypoint (all (21,) bool)."""

    xy: np.ndarray
    conf: np.ndarray
    outlier: np.ndarray
    missing: np.ndarray
    sigma: np.ndarray  # (21,) the jitter std used, px


def apply_noise(uv: np.ndarray, occluded: np.ndarray, self_occluded: np.ndarray, image_size: int | tuple[int, int],
                rng: np.random.Generator, model: NoiseModel = NoiseModel()) -> NoisyDetection:
    """Detections of one image from its ground-truth keypoints.

    uv (21, 2) GT projections, pixels; occluded (21,) hidden by an occluder or outside the image;
    self_occluded (21,) hidden by the hand; image_size int or (H, W). The random draws happen in a
    fixed order and number (independent of the outcome) so a seed gives the same detections.
    """
    uv = np.asarray(uv, dtype=np.float64)
    if uv.shape != (NUM_JOINTS, 2):
        raise ValueError(f"apply_noise: uv must be (21, 2), got {uv.shape}")
    occluded = np.asarray(occluded, bool).reshape(NUM_JOINTS)
    self_occluded = np.asarray(self_occluded, bool).reshape(NUM_JOINTS)
    H, W = (image_size, image_size) if np.isscalar(image_size) else tuple(image_size)
    pixel_scale = max(H, W) / float(model.reference_size)

    # fixed draw order: difficulty, jitter, conf noise, outlier flags/kind/targets/conf, missing flags
    lstd = model.difficulty_logstd
    difficulty = float(np.exp(lstd * rng.standard_normal() - 0.5 * lstd**2))
    sigma = joint_sigma(model, occluded, self_occluded, pixel_scale, difficulty)  # (21,)
    xy = uv + rng.standard_normal((NUM_JOINTS, 2)) * sigma[:, None]
    conf_noise = rng.standard_normal(NUM_JOINTS) * model.conf_noise
    err = np.linalg.norm(xy - uv, axis=-1)
    conf = confidence_from_error(err, model.conf_scale_px * pixel_scale, conf_noise, model.conf_min)
    conf = np.where(occluded | self_occluded, conf * model.occluded_conf_factor, conf)
    conf = np.maximum(conf, model.conf_min)

    outlier = rng.random(NUM_JOINTS) < model.p_outlier
    swap = rng.random(NUM_JOINTS) < model.outlier_swap_prob
    pick = rng.random(NUM_JOINTS)
    random_xy = rng.random((NUM_JOINTS, 2)) * np.array([W, H]) - 0.5
    outlier_conf = rng.uniform(model.outlier_conf[0], model.outlier_conf[1], NUM_JOINTS)
    near = rng.standard_normal((NUM_JOINTS, 2)) * sigma[:, None]
    for j in np.flatnonzero(outlier):
        nb = NEIGHBOURS[j]
        if swap[j] and nb:
            xy[j] = uv[nb[int(pick[j] * len(nb))]] + near[j]
        else:
            xy[j] = random_xy[j]
    conf = np.where(outlier, outlier_conf, conf)

    missing = rng.random(NUM_JOINTS) < model.p_missing
    xy = np.where(missing[:, None], 0.0, xy)
    conf = np.where(missing, 0.0, conf)
    outlier = outlier & ~missing
    return NoisyDetection(xy.astype(np.float32), conf.astype(np.float32), outlier, missing, sigma)
