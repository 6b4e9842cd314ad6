"""The embedded synthetic dataset, written in FreiHAND's own layout (``data=synthetic``).

Each sample is handrecon's open hand model in a natural pose (:func:`handrecon.models.anatomy.sample_natural_pose`),
a random shape, a random global rotation (any view: palm, back, side, fingers up or down), a
skin-like per-vertex texture and random lighting, rendered by :class:`handrecon.render.soft.SoftRasterizer`
over a procedural cluttered background (:mod:`handrecon.data.backgrounds`), sometimes partly hidden by an
occluder, with mild image noise and blur. Its 2D detections come from the detector-like noise model
(:mod:`handrecon.data.detector_noise`). The output is FreiHAND's layout (one version), so
:class:`handrecon.data.freihand.FreiHANDDataset` reads it::

    <out>/training/rgb/%08d.jpg        <out>/training/mask/%08d.jpg (visible hand silhouette)
    <out>/training_K.json (N,3,3)      <out>/training_xyz.json (N,21,3) metres, camera frame
    <out>/training_verts.json (N,V,3)  <out>/training_mano.json (N,1,61)   <out>/training_scale.json (N,)
    <out>/evaluation/...               the same for the evaluation split
    <out>/detections/training.json     handrecon detections (dataset 'synthetic', detector 'synthetic-noise')
    <out>/detections/evaluation.json
    <out>/meta/<split>.json            per sample: occluder present, per-joint occluded / self-occluded /
                                       outlier / missing flags
    <out>/handrecon_synth.json         generation parameters, seed, counts, version (written last)

``<split>_mano.json`` holds per sample ``[[48 pose, 10 betas, 3 transl]]`` in the *open hand model's*
parameterisation: pose = global orientation (axis-angle) + 15 finger joint rotations (axis-angle,
absolute, i.e. ``flat_hand_mean=True``, no PCA), so ``HandModel(use_pca=False, flat_hand_mean=True)``
with ``global_orient=pose[:3], hand_pose=pose[3:], betas, transl`` reproduces ``<split>_verts.json``.

Determinism: sample i of a split draws everything from ``numpy.random.default_rng([seed, split_id, i])``;
samples are rendered in fixed chunks of ``batch_size`` consecutive indices with one torch thread, so the
number of worker processes does not change a single byte of the output.

Command line (key=value)::

    python -m handrecon.data.synth out=DIR n_train=2000 n_eval=200 seed=0 workers=2 image_size=224
    python -m handrecon.data.synth preview=docs/synthetic_grid.png [seed=0 image_size=224]
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import multiprocessing as mp
import os
import shutil
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import cv2
import numpy as np
import torch

from handrecon.data.backgrounds import draw_occluder, random_background
from handrecon.data.detections import Detections
from handrecon.data.detector_noise import (
    NoiseModel,
    apply_noise,
    inside_image,
    joint_radius,
    sample_depth,
    self_occlusion,
)
from handrecon.geometry.camera import project_np
from handrecon.geometry.rotation import matrix_to_axis_angle
from handrecon.joints import NUM_JOINTS

log = logging.getLogger(__name__)

#: bump when the generator's output changes for the same parameters (invalidates caches)
SYNTH_VERSION = 1
FORMAT = "handrecon.synthetic"
SPLITS: tuple[str, ...] = ("training", "evaluation")
SPLIT_IDS = {"training": 0, "evaluation": 1}
META_FILE = "handrecon_synth.json"
DEFAULT_CACHE = "~/.cache/handrecon"

#: skin albedo palette, light to dark (linear-ish RGB in [0, 1])
SKIN_PALETTE = np.array(
    [
        [0.96, 0.80, 0.70],
        [0.90, 0.70, 0.58],
        [0.78, 0.57, 0.44],
        [0.62, 0.43, 0.31],
        [0.45, 0.30, 0.21],
        [0.30, 0.20, 0.14],
    ]
)
#: the palm's colour target (palms are lighter and pinker, more visibly so on darker skin)
PALM_COLOUR = np.array([0.93, 0.72, 0.64])


# ---------------------------------------------------------------------------------------------- config

_INT_FIELDS = ("n_train", "n_eval", "seed", "image_size", "batch_size", "jpeg_quality")
#: knobs added later: left out of to_dict (and the hash) at their defaults
_LATER_FIELDS = ("view_cone_min_deg", "skin_tone_range", "albedo_tint", "ambient_range", "directional_range",
                 "background_clutter")


@dataclass(frozen=True)
class SynthConfig:
    """Everything that determines the generated data (hashed into the cache folder's name).

    Pixel quantities are for a 224 px image and scale with ``image_size``.
    """

    n_train: int = 2000
    n_eval: int = 200
    seed: int = 0
    image_size: int = 224
    #: samples rendered together (fixed chunks of consecutive indices; part of the determinism contract)
    batch_size: int = 16
    #: scale of the anatomy sampler's pose spread
    pose_spread: float = 1.0
    #: betas ~ N(0, beta_std^2), clipped to +-beta_clip
    beta_std: float = 0.8
    beta_clip: float = 2.5
    #: focal length range, px at 224 px (FreiHAND: about 500-600)
    focal_range: tuple[float, float] = (480.0, 620.0)
    #: principal point jitter around the image centre, px at 224 (uniform +-)
    principal_jitter_px: float = 4.0
    #: projected hand bounding-box side / image side
    fill_range: tuple[float, float] = (0.5, 0.8)
    #: hand box centre offset from the principal point, fraction of the image side (uniform +-)
    centre_jitter: float = 0.06
    #: hand distance from the camera is clamped to this range, metres
    depth_range: tuple[float, float] = (0.3, 1.2)
    #: probability of an occluder over part of the hand, and its radius / hand box side
    p_occluder: float = 0.3
    #: views: 180 = global rotation uniform over the whole sphere; less = within this angle (degrees)
    #: of a palm or back view with the fingers up (either side with probability 1/2)
    view_cone_deg: float = 180.0
    occluder_size: tuple[float, float] = (0.12, 0.3)
    #: views at least this angle (degrees) away from the palm/back view (a view cone with a hole:
    #: with view_cone_deg, a ring of tilts; 0: the whole cone)
    view_cone_min_deg: float = 0.0
    #: skin tones drawn from this part of :data:`SKIN_PALETTE` (0 = lightest, 1 = darkest)
    skin_tone_range: tuple[float, float] = (0.0, 1.0)
    #: the albedo is multiplied by this RGB colour (e.g. (0.45, 0.7, 1.25): blue gloves), then clipped to [0, 1]
    albedo_tint: tuple[float, float, float] = (1.0, 1.0, 1.0)
    #: ambient and directional light intensities (before their colour tint)
    ambient_range: tuple[float, float] = (0.35, 0.7)
    directional_range: tuple[float, float] = (0.3, 0.8)
    #: number of clutter shapes drawn on each background
    background_clutter: tuple[float, float] = (4.0, 20.0)
    #: additive Gaussian pixel noise std range (on [0, 1] images)
    pixel_noise: tuple[float, float] = (0.0, 0.02)
    #: probability and sigma range (px at 224) of a Gaussian blur of the final image
    blur_prob: float = 0.4
    blur_sigma: tuple[float, float] = (0.3, 1.0)
    #: soft-rasteriser edge sharpness (squared NDC units; small = hard edges)
    render_sigma: float = 2e-5
    jpeg_quality: int = 95
    noise: NoiseModel = field(default_factory=NoiseModel)

    def __post_init__(self) -> None:
        # normalise types (frozen): ints stay ints, the rest floats, pairs tuples -> a stable hash
        for f in fields(self):
            v = getattr(self, f.name)
            try:
                if f.name == "noise":
                    v = v if isinstance(v, NoiseModel) else NoiseModel.from_dict(v)
                elif f.name in _INT_FIELDS:
                    v = int(v)
                elif isinstance(f.default, tuple):
                    v = tuple(float(x) for x in v)
                    if len(v) != len(f.default):
                        raise ValueError(f"not {len(f.default)} numbers")
                else:
                    v = float(v)
            except (TypeError, ValueError) as e:
                what = (("a (lo, hi) pair of numbers" if len(f.default) == 2 else f"{len(f.default)} numbers")
                        if isinstance(f.default, tuple) else "a number")
                raise ValueError(f"synthetic: option {f.name}={getattr(self, f.name)!r} is invalid ({e}); expected {what}") from None
            object.__setattr__(self, f.name, v)
        if int(self.n_train) < 0 or int(self.n_eval) < 0 or int(self.n_train) + int(self.n_eval) == 0:
            raise ValueError(f"synthetic: n_train and n_eval must be >= 0 and not both 0, got {self.n_train}, {self.n_eval}")
        if int(self.image_size) < 16:
            raise ValueError(f"synthetic: image_size must be >= 16 pixels, got {self.image_size}")
        if int(self.batch_size) < 1:
            raise ValueError(f"synthetic: batch_size must be >= 1, got {self.batch_size}")
        for name in ("focal_range", "fill_range", "depth_range", "occluder_size", "pixel_noise", "blur_sigma",
                     "ambient_range", "directional_range", "background_clutter"):
            lo, hi = getattr(self, name)
            if not (0 <= lo <= hi):
                raise ValueError(f"synthetic: {name} must be (lo, hi) with 0 <= lo <= hi, got {getattr(self, name)!r}")
        for name in ("p_occluder", "blur_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"synthetic: {name} must be in [0, 1], got {getattr(self, name)!r}")
        if not 1 <= int(self.jpeg_quality) <= 100:
            raise ValueError(f"synthetic: jpeg_quality must be in 1..100, got {self.jpeg_quality}")
        lo, hi = self.skin_tone_range
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"synthetic: skin_tone_range must satisfy 0 <= lo <= hi <= 1, got {self.skin_tone_range!r}")
        if min(self.albedo_tint) < 0:
            raise ValueError(f"synthetic: albedo_tint must be >= 0, got {self.albedo_tint!r}")
        if not 0.0 <= self.view_cone_min_deg <= min(self.view_cone_deg, 180.0):
            raise ValueError(f"synthetic: view_cone_min_deg must be in [0, view_cone_deg], got {self.view_cone_min_deg}")

    def to_dict(self) -> dict:
        """Every parameter; the appearance/view knobs added after the first release only where they
        differ from their defaults (so caches of default data keep their names)."""
        d = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in _LATER_FIELDS and v == f.default:
                continue
            d[f.name] = v.to_dict() if isinstance(v, NoiseModel) else (list(v) if isinstance(v, tuple) else v)
        return d

    @classmethod
    def from_dict(cls, d: dict | None) -> SynthConfig:
        """From a (partial) mapping; unknown keys raise an error naming them."""
        d = dict(d or {})
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"unknown synthetic-data option(s) {unknown}; expected some of {sorted(known)}")
        return cls(**d)

    def param_hash(self) -> str:
        """Short hash of the parameters, the generator version and the hand model asset's bytes
        (names the cache folder; a regenerated asset invalidates cached data)."""
        doc = json.dumps({"version": SYNTH_VERSION, "params": self.to_dict(), "hand_model": hand_model_fingerprint()},
                         sort_keys=True)
        return hashlib.sha1(doc.encode()).hexdigest()[:12]

    def count(self, split: str) -> int:
        return int(self.n_train) if split == "training" else int(self.n_eval)


@functools.lru_cache(maxsize=1)
def hand_model_fingerprint() -> str:
    """sha1 (12 hex digits) of the shipped open hand model file the data is generated from."""
    from handrecon.models.hand_model import default_asset_path

    path = Path(default_asset_path())
    try:
        return hashlib.sha1(path.read_bytes()).hexdigest()[:12]
    except OSError as e:
        raise FileNotFoundError(f"synthetic: the open hand model asset {path} cannot be read ({e}); "
                                "regenerate it with `python -m handrecon.models.openhand`") from None


# ---------------------------------------------------------------------------------------------- sampling (pure)


def sample_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of sample ``index`` of ``split``: independent of chunking and workers."""
    if split not in SPLIT_IDS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return np.random.default_rng([int(seed), SPLIT_IDS[split], int(index)])


#: camera-from-model rotation of the palm view with the fingers up (model: fingers -x, palm -y;
#: camera: x right, y down, z forward)
FRONT_VIEW = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def cone_rotation(rng: np.random.Generator, cone_deg: float, min_deg: float = 0.0) -> np.ndarray:
    """A palm or back view (probability 1/2 each) with the fingers up, tilted by a rotation about a
    uniformly random axis by an angle uniform in [min_deg, cone_deg]."""
    axis = rng.standard_normal(3)
    axis /= np.linalg.norm(axis)
    angle = np.deg2rad(rng.uniform(min_deg, cone_deg))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    tilt = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)
    side = np.diag([-1.0, 1.0, -1.0]) if rng.uniform() < 0.5 else np.eye(3)  # back view: 180 deg about y
    return tilt @ side @ FRONT_VIEW


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly distributed rotation matrix (3, 3) (normalised Gaussian quaternion)."""
    q = rng.standard_normal(4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def sample_skin_tone(rng: np.random.Generator, tone_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """A base skin albedo (3,): a point of ``tone_range`` on :data:`SKIN_PALETTE` (0 lightest, 1 darkest)
    plus a small hue / redness jitter."""
    t = rng.uniform(*tone_range) * (len(SKIN_PALETTE) - 1)
    i = min(int(t), len(SKIN_PALETTE) - 2)
    base = SKIN_PALETTE[i] * (1 - (t - i)) + SKIN_PALETTE[i + 1] * (t - i)
    base = base * (1.0 + rng.normal(0.0, 0.03, 3))
    base[0] *= 1.0 + rng.uniform(-0.03, 0.06)  # redness
    return np.clip(base, 0.05, 1.0)


def skin_albedo(rest_verts: np.ndarray, palm: np.ndarray, tone: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-vertex skin colour (V, 3) in [0, 1].

    rest_verts (V, 3) the mean hand in its rest pose (texture coordinates: the pattern moves with the
    skin); palm (V,) in [0, 1] how much a vertex is on the palm side; tone (3,) base albedo. Adds a
    few random low-frequency sinusoids of the rest position (brightness and redness blotches) and a
    lighter palm (more so for darker skin).
    """
    x = rest_verts - rest_verts.mean(0)
    n_waves = 4
    freq = rng.standard_normal((n_waves, 3))
    freq *= (rng.uniform(15.0, 60.0, n_waves) / np.linalg.norm(freq, axis=1))[:, None]  # rad / m
    phase = rng.uniform(0, 2 * np.pi, n_waves)
    waves = np.sin(x @ freq.T + phase)  # (V, n_waves)
    bright = 1.0 + waves[:, :2] @ rng.uniform(0.02, 0.06, 2)
    red = waves[:, 2:] @ rng.uniform(0.0, 0.04, n_waves - 2)
    col = tone[None, :] * bright[:, None]
    col[:, 0] += red
    darkness = 1.0 - float(tone.mean())
    palm_col = np.maximum(col, PALM_COLOUR[None, :])  # never darker than the skin around it
    a = (0.1 + 0.5 * darkness) * np.clip(palm, 0.0, 1.0)[:, None]
    col = col * (1 - a) + palm_col * a
    return np.clip(col, 0.0, 1.0)


def sample_lighting(rng: np.random.Generator, ambient_range: tuple[float, float] = (0.35, 0.7),
                    directional_range: tuple[float, float] = (0.3, 0.8)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ambient (3,), directional (3,), direction (3,)) in the camera frame.

    Ambient (default 0.35-0.7) and directional (0.3-0.8) intensities, each tinted by a colour temperature
    (warm to cool) plus a small random tint; the light comes from the camera's side (direction
    towards the light has z < 0).
    """

    def tint() -> np.ndarray:
        t = rng.uniform(-1.0, 1.0)
        c = np.array([1.0 + 0.12 * t, 1.0, 1.0 - 0.12 * t]) * (1.0 + rng.normal(0.0, 0.03, 3))
        return c / c.mean()

    ambient = rng.uniform(*ambient_range) * tint()
    directional = rng.uniform(*directional_range) * tint()
    direction = np.array([rng.uniform(-1, 1), rng.uniform(-1, 1), -rng.uniform(0.2, 1.0)])
    return ambient, directional, direction / np.linalg.norm(direction)


def make_K(f: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]])


def frame_hand(points: np.ndarray, K: np.ndarray, fill: float, centre_uv: np.ndarray, image_size: int,
               depth_range: tuple[float, float] = (0.3, 1.2), iters: int = 4) -> np.ndarray:
    """Translation T (3,) so that points + T (camera frame) project with K into a box of side
    ``fill * image_size`` px centred at ``centre_uv`` (2,) (depth clamped to ``depth_range``)."""
    f = 0.5 * (K[0, 0] + K[1, 1])
    lo, hi = points.min(0), points.max(0)
    centre3 = 0.5 * (lo + hi)
    ext = float(max(hi[0] - lo[0], hi[1] - lo[1], 1e-4))
    z = float(np.clip(f * ext / (fill * image_size), *depth_range))
    T = np.array([-centre3[0], -centre3[1], z - centre3[2]])
    T[:2] += (centre_uv - K[:2, 2]) * z / f
    for _ in range(iters):
        uv = project_np(points + T, K)
        ulo, uhi = uv.min(0), uv.max(0)
        side = float(max(uhi - ulo))
        zc = T[2] + centre3[2]
        z_new = float(np.clip(zc * side / (fill * image_size), *depth_range))
        T[2] += z_new - zc
        uv = project_np(points + T, K)
        d = centre_uv - 0.5 * (uv.min(0) + uv.max(0))
        T[:2] += d * (T[2] + centre3[2]) / f
    return T


def middle_bone_length(joints: np.ndarray) -> float:
    """FreiHAND's 'scale': length of the middle finger's first bone (MCP -> PIP, joints 9 -> 10), metres."""
    return float(np.linalg.norm(joints[10] - joints[9]))


def add_image_noise(img: np.ndarray, rng: np.random.Generator, cfg: SynthConfig) -> np.ndarray:
    """Mild blur (with probability ``blur_prob``) then Gaussian pixel noise: img (H, W, 3) float in [0, 1]."""
    S = img.shape[0]
    do_blur = rng.random() < cfg.blur_prob
    sigma = rng.uniform(*cfg.blur_sigma) * S / 224.0
    if do_blur and sigma > 0.05:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    std = rng.uniform(*cfg.pixel_noise)
    img = img + rng.standard_normal(img.shape).astype(np.float32) * std
    return np.clip(img, 0.0, 1.0)


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------- rendering


@dataclass
class Sample:
    """One generated sample (numpy, full image)."""

    rgb: np.ndarray  # (S, S, 3) uint8
    mask: np.ndarray  # (S, S) uint8 0 / 255, visible hand
    K: np.ndarray  # (3, 3)
    xyz: np.ndarray  # (21, 3) metres, camera frame
    verts: np.ndarray  # (V, 3)
    mano: np.ndarray  # (61,) 48 pose + 10 betas + 3 transl
    scale: float
    det_xy: np.ndarray  # (21, 2)
    det_conf: np.ndarray  # (21,)
    occluder: bool
    occluded: np.ndarray  # (21,) bool: by the occluder or outside the image
    self_occluded: np.ndarray  # (21,) bool
    outlier: np.ndarray  # (21,) bool
    missing: np.ndarray  # (21,) bool


class SynthRenderer:
    """The hand model, the renderer and the model-derived texture helpers of one process."""

    def __init__(self, cfg: SynthConfig) -> None:
        from handrecon.models.hand_model import HandModel
        from handrecon.render.soft import SoftRasterizer

        self.cfg = cfg
        self.model = HandModel(path=None, side="right", use_pca=False, flat_hand_mean=True)  # the shipped open hand
        self.model.eval()
        if self.model.num_betas != 10 or self.model.pose_dim != 45:
            raise ValueError(f"synthetic: the hand model must have 10 betas and 45 finger pose values (FreiHAND's "
                             f"61-number mano record), got {self.model.num_betas} and {self.model.pose_dim}")
        self.faces = torch.as_tensor(self.model.faces, dtype=torch.long)
        self.renderer = SoftRasterizer(sigma=cfg.render_sigma, gamma=1e-4, shading="gouraud")
        self.frames = self.model.joint_frames
        with torch.no_grad():
            rest = self.model(torch.zeros(1, 45), torch.zeros(1, 10))
        self.rest_verts = rest.verts[0].double().numpy()  # (V, 3)
        self.rest_joints = rest.joints[0].double().numpy()  # (21, 3)
        self.palm = self._palm_weight()

    def _palm_weight(self) -> np.ndarray:
        """(V,) in [0, 1]: how much each rest vertex faces the palm side.

        The palm side is found without assuming the model's axes: natural poses curl the fingers
        towards the palm, so the mean fingertip displacement of a few sampled poses points there.
        """
        from handrecon.models.anatomy import sample_natural_pose
        from handrecon.render.base import vertex_normals

        j = self.rest_joints
        n = np.cross(j[5] - j[0], j[17] - j[0])
        n /= np.linalg.norm(n)
        g = torch.Generator().manual_seed(12345)
        pose = sample_natural_pose(16, self.frames, g).reshape(16, -1).float()
        with torch.no_grad():
            out = self.model(pose, torch.zeros(16, 10))
        tips = out.joints.double().numpy()[:, [8, 12, 16, 20]]  # non-thumb tips (B, 4, 3)
        disp = (tips - j[None, [8, 12, 16, 20]]).mean((0, 1))
        if float(disp @ n) < 0:
            n = -n
        vn = vertex_normals(torch.as_tensor(self.rest_verts[None]), self.faces)[0].numpy()
        return np.clip((vn @ n - 0.2) / 0.6, 0.0, 1.0)

    @torch.no_grad()
    def render(self, split: str, indices: Sequence[int]) -> list[Sample]:
        """Render samples ``indices`` of ``split`` as one batch."""
        from handrecon.models.anatomy import sample_natural_pose
        from handrecon.render.base import Lighting

        cfg, S = self.cfg, int(self.cfg.image_size)
        px = S / 224.0
        rngs = [sample_rng(cfg.seed, split, i) for i in indices]
        poses, betas, rots = [], [], []
        for rng in rngs:
            g = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
            poses.append(sample_natural_pose(1, self.frames, g, spread=cfg.pose_spread).reshape(1, -1).double())
            betas.append(np.clip(rng.normal(0.0, cfg.beta_std, 10), -cfg.beta_clip, cfg.beta_clip))
            rots.append(random_rotation(rng) if cfg.view_cone_deg >= 180.0 and cfg.view_cone_min_deg == 0
                        else cone_rotation(rng, cfg.view_cone_deg, cfg.view_cone_min_deg))
        global_orient = matrix_to_axis_angle(torch.as_tensor(np.stack(rots)))  # (B, 3)
        hand_pose = torch.cat(poses, 0)  # (B, 45)
        betas_t = torch.as_tensor(np.stack(betas))
        out = self.model(hand_pose.float(), betas_t.float(), global_orient.float(), None)
        verts0 = out.verts.double().numpy()  # (B, V, 3)
        joints0 = out.joints.double().numpy()
        full_pose = out.full_pose.double().numpy()  # (B, 48)

        Ks, transl, albedo, amb, dirl, ldir, bgs = [], [], [], [], [], [], []
        for b, rng in enumerate(rngs):
            f = rng.uniform(*cfg.focal_range) * px
            c = (S - 1) / 2.0 + rng.uniform(-1, 1, 2) * cfg.principal_jitter_px * px
            K = make_K(f, c[0], c[1])
            fill = rng.uniform(*cfg.fill_range)
            centre = c + rng.uniform(-1, 1, 2) * cfg.centre_jitter * S
            T = frame_hand(verts0[b], K, fill, centre, S, cfg.depth_range)
            Ks.append(K)
            transl.append(T)
            tone = sample_skin_tone(rng, cfg.skin_tone_range)
            albedo.append(np.clip(skin_albedo(self.rest_verts, self.palm, tone, rng) * np.asarray(cfg.albedo_tint), 0.0, 1.0))
            a, d, l = sample_lighting(rng, cfg.ambient_range, cfg.directional_range)
            amb.append(a)
            dirl.append(d)
            ldir.append(l)
            clutter = (int(round(cfg.background_clutter[0])), int(round(cfg.background_clutter[1])))
            bgs.append(random_background(S, rng, clutter))
        transl = np.stack(transl)
        verts = verts0 + transl[:, None, :]
        joints = joints0 + transl[:, None, :]
        K = np.stack(Ks)
        f32 = torch.float32
        lighting = Lighting(torch.as_tensor(np.stack(amb), dtype=f32), torch.as_tensor(np.stack(dirl), dtype=f32),
                            torch.as_tensor(np.stack(ldir), dtype=f32))
        r = self.renderer(torch.as_tensor(verts, dtype=f32), self.faces, torch.as_tensor(np.stack(albedo), dtype=f32),
                          torch.as_tensor(K, dtype=f32), S, lighting, torch.as_tensor(np.stack(bgs), dtype=f32))
        rgb_all, sil_all, depth_all = r.rgb.numpy(), r.silhouette.numpy(), r.depth.numpy()

        samples = []
        for b, rng in enumerate(rngs):
            img = np.clip(rgb_all[b], 0.0, 1.0)
            uv = project_np(joints[b], K[b])  # (21, 2)
            ulo, uhi = uv.min(0), uv.max(0)
            hand_side = float(max(uhi - ulo))
            has_occ = rng.random() < cfg.p_occluder
            occ_joint = int(rng.integers(NUM_JOINTS))
            occ_centre = uv[occ_joint] + rng.normal(0.0, 0.08 * hand_side, 2)
            occ_radius = rng.uniform(*cfg.occluder_size) * hand_side
            occ_mask = np.zeros((S, S), np.float32)
            if has_occ:
                img, occ_mask = draw_occluder(img, rng, occ_centre, occ_radius)
            img = add_image_noise(img, rng, cfg)
            inside = inside_image(uv, S)
            occluded = ~inside | (sample_depth(occ_mask, uv) > 0.5)
            self_occ = self_occlusion(joints[b, :, 2], sample_depth(depth_all[b], uv),
                                      joint_radius(joints[b], verts[b]), cfg.noise.self_occlusion_tol_m)
            self_occ &= ~occluded
            det = apply_noise(uv, occluded, self_occ, S, rng, cfg.noise)
            mask = ((sil_all[b] > 0.5) & (occ_mask < 0.5)).astype(np.uint8) * 255
            samples.append(
                Sample(
                    rgb=to_uint8(img), mask=mask, K=K[b], xyz=joints[b], verts=verts[b],
                    mano=np.concatenate([full_pose[b], betas[b], transl[b]]), scale=middle_bone_length(joints[b]),
                    det_xy=det.xy, det_conf=det.conf, occluder=bool(has_occ), occluded=occluded,
                    self_occluded=self_occ, outlier=det.outlier, missing=det.missing,
                )  # fmt: skip
            )
        return samples


# ---------------------------------------------------------------------------------------------- workers

_WORKER: dict = {}


def _get_renderer(cfg_dict: dict) -> SynthRenderer:
    key = json.dumps(cfg_dict, sort_keys=True)
    if _WORKER.get("key") != key:
        _WORKER["renderer"] = SynthRenderer(SynthConfig.from_dict(cfg_dict))
        _WORKER["key"] = key
    return _WORKER["renderer"]


def _round(a, nd: int):
    return np.round(np.asarray(a, np.float64), nd).tolist()


def _dumps(x) -> str:
    return json.dumps(x, separators=(",", ":"))


def _encode_jpeg(img: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("synthetic: JPEG encoding failed")
    return buf.tobytes()


def _work_chunk(task: tuple[dict, str, list[int], str]) -> dict:
    """Render one chunk, write its images, return its annotation rows (JSON text) and arrays."""
    cfg_dict, split, indices, out_dir = task
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # results must not depend on the thread count
    try:
        samples = _get_renderer(cfg_dict).render(split, indices)
    finally:
        torch.set_num_threads(threads)
    q = int(cfg_dict["jpeg_quality"])
    rgb_dir, mask_dir = Path(out_dir) / split / "rgb", Path(out_dir) / split / "mask"
    rows: dict[str, list[str]] = {k: [] for k in ("K", "xyz", "verts", "mano", "scale")}
    for i, s in zip(indices, samples):
        (rgb_dir / f"{i:08d}.jpg").write_bytes(_encode_jpeg(cv2.cvtColor(s.rgb, cv2.COLOR_RGB2BGR), q))
        (mask_dir / f"{i:08d}.jpg").write_bytes(_encode_jpeg(s.mask, q))
        rows["K"].append(_dumps(_round(s.K, 6)))
        rows["xyz"].append(_dumps(_round(s.xyz, 6)))  # 1 um
        rows["verts"].append(_dumps(_round(s.verts, 5)))  # 10 um: keeps the largest file small
        rows["mano"].append(_dumps([_round(s.mano, 6)]))
        rows["scale"].append(_dumps(round(float(s.scale), 6)))
    return {
        "indices": list(indices),
        "rows": rows,
        "det_xy": np.stack([s.det_xy for s in samples]),
        "det_conf": np.stack([s.det_conf for s in samples]),
        "occluder": [s.occluder for s in samples],
        "flags": np.stack([np.stack([s.occluded, s.self_occluded, s.outlier, s.missing]) for s in samples]),
    }


def _chunks(n: int, size: int) -> list[list[int]]:
    return [list(range(a, min(a + size, n))) for a in range(0, n, size)]


class _JsonListWriter:
    """Streams a JSON list row by row (so 100k samples never sit in memory at once)."""

    def __init__(self, path: Path) -> None:
        self.f = open(path, "w")
        self.f.write("[")
        self.first = True

    def write(self, row: str) -> None:
        self.f.write(row if self.first else "," + row)
        self.first = False

    def close(self) -> None:
        self.f.write("]")
        self.f.close()


def _run_tasks(tasks: list, workers: int, progress: bool, desc: str) -> Iterable[dict]:
    from tqdm import tqdm

    total = sum(len(t[2]) for t in tasks)
    bar = tqdm(total=total, desc=desc, unit="img", disable=not progress, dynamic_ncols=True)
    try:
        if workers <= 1:
            for t in tasks:
                res = _work_chunk(t)
                bar.update(len(res["indices"]))
                yield res
        else:
            ctx = mp.get_context("spawn")
            with ctx.Pool(workers) as pool:
                for res in pool.imap(_work_chunk, tasks):
                    bar.update(len(res["indices"]))
                    yield res
    finally:
        bar.close()


def generate(out: str | os.PathLike, cfg: SynthConfig = SynthConfig(), workers: int = 1, progress: bool = True) -> Path:
    """Generate the dataset into ``out`` atomically (a temp folder renamed at the end).

    ``out`` must be absent or an empty folder (callers check it with :func:`check_target` under
    :func:`generation_lock`); it is never replaced. Returns ``out``.
    """
    out = Path(out).expanduser().resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    workers = max(1, int(workers))
    cfg_dict = cfg.to_dict()
    t0 = time.perf_counter()
    try:
        for split in SPLITS:
            n = cfg.count(split)
            (tmp / split / "rgb").mkdir(parents=True)
            (tmp / split / "mask").mkdir(parents=True)
            writers = {k: _JsonListWriter(tmp / f"{split}_{k}.json") for k in ("K", "xyz", "verts", "mano", "scale")}
            det = Detections([], np.zeros((0, NUM_JOINTS, 2)), np.zeros((0, NUM_JOINTS)), "synthetic", split, "synthetic-noise")
            det_xy, det_conf, occluder, flags = [], [], [], []
            tasks = [(cfg_dict, split, c, str(tmp)) for c in _chunks(n, int(cfg.batch_size))]
            for res in _run_tasks(tasks, min(workers, max(len(tasks), 1)), progress, f"synthetic {split}"):
                for k, w in writers.items():
                    for row in res["rows"][k]:
                        w.write(row)
                det_xy.append(res["det_xy"])
                det_conf.append(res["det_conf"])
                occluder += res["occluder"]
                flags.append(res["flags"])
            for w in writers.values():
                w.close()
            det = Detections(
                [f"{i:08d}" for i in range(n)],
                np.concatenate(det_xy) if n else np.zeros((0, NUM_JOINTS, 2)),
                np.concatenate(det_conf) if n else np.zeros((0, NUM_JOINTS)),
                "synthetic", split, "synthetic-noise",
            )  # fmt: skip
            det.save(tmp / "detections" / f"{split}.json")
            fl = np.concatenate(flags).astype(int) if n else np.zeros((0, 4, NUM_JOINTS), int)
            meta = {
                "occluder": [int(o) for o in occluder],
                "occluded": fl[:, 0].tolist(), "self_occluded": fl[:, 1].tolist(),
                "outlier": fl[:, 2].tolist(), "missing": fl[:, 3].tolist(),
            }  # fmt: skip
            (tmp / "meta").mkdir(exist_ok=True)
            (tmp / "meta" / f"{split}.json").write_text(json.dumps(meta))
        elapsed = time.perf_counter() - t0
        info = {
            "format": FORMAT, "version": SYNTH_VERSION, "hash": cfg.param_hash(), "seed": int(cfg.seed),
            "counts": {s: cfg.count(s) for s in SPLITS}, "params": cfg_dict,
            "hand_model_sha1": hand_model_fingerprint(),
        }  # fmt: skip
        (tmp / META_FILE).write_text(json.dumps(info, indent=1, sort_keys=True))
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    n_all = cfg.n_train + cfg.n_eval
    log.info("synthetic: %d images in %.1f s (%.1f img/s, %d workers) -> %s", n_all, elapsed, n_all / elapsed, workers, out)
    return out


def _replace_dir(tmp: Path, out: Path) -> None:
    """Move the finished ``tmp`` to ``out`` (absent or an empty folder). Nothing in ``out`` is ever
    deleted: if another process finished the same dataset first (same parameter hash), its copy is
    kept and ``tmp`` dropped; any other content of ``out`` is an error."""
    try:
        os.replace(tmp, out)  # POSIX rename: replaces only an absent path or an empty folder
    except OSError:
        mine, theirs = read_info(tmp), read_info(out)
        shutil.rmtree(tmp, ignore_errors=True)
        if mine is not None and theirs is not None and mine.get("hash") == theirs.get("hash") \
                and mine.get("version") == theirs.get("version"):
            return  # a concurrent run wrote the same data
        raise FileExistsError(f"synthetic: {out} was filled by something else while generating; nothing was "
                              "replaced (generate elsewhere)") from None


def read_info(root: str | os.PathLike) -> dict | None:
    """The generation record of a synthetic dataset folder, or None when absent/unreadable."""
    p = Path(root).expanduser() / META_FILE
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def is_complete(root: str | os.PathLike, cfg: SynthConfig) -> bool:
    """True when ``root`` holds a finished dataset generated with exactly ``cfg`` by this generator
    version from the current hand model asset."""
    info = read_info(root)
    return (
        info is not None
        and info.get("format") == FORMAT
        and info.get("version") == SYNTH_VERSION
        and info.get("params") == cfg.to_dict()
        and info.get("hash") == cfg.param_hash()
    )


def default_root(cfg: SynthConfig, cache_dir: str | os.PathLike | None = None) -> Path:
    """``<cache_dir>/synthetic_<hash>``; cache_dir defaults to $HANDRECON_CACHE or ~/.cache/handrecon."""
    base = cache_dir if cache_dir else os.environ.get("HANDRECON_CACHE", DEFAULT_CACHE)
    return Path(base).expanduser() / f"synthetic_{cfg.param_hash()}"


def ensure_synthetic(root: str | os.PathLike | None = None, n_train: int = 2000, n_eval: int = 200, seed: int = 0,
                     image_size: int = 224, cache_dir: str | os.PathLike | None = None, workers: int | None = None,
                     progress: bool = True, **options) -> Path:
    """The synthetic dataset's folder, generated first when missing or made with other parameters.

    root: explicit folder (None: :func:`default_root` in ``cache_dir``). ``options``: any other
    :class:`SynthConfig` field (``noise`` as a mapping of :class:`NoiseModel` fields). workers:
    processes (None: up to 4, one per CPU). Returns the folder.
    """
    cfg = SynthConfig.from_dict(dict(options, n_train=n_train, n_eval=n_eval, seed=seed, image_size=image_size))
    root = Path(root).expanduser() if root else default_root(cfg, cache_dir)
    if is_complete(root, cfg):
        return root
    if workers is None:
        workers = max(1, min(4, os.cpu_count() or 1))
    with generation_lock(root):  # two runs sharing a root: one generates, the other waits and re-checks
        if check_target(root, cfg):
            return root
        log.info("synthetic: generating %d + %d images (seed %d, %d px) into %s", cfg.n_train, cfg.n_eval, cfg.seed,
                 cfg.image_size, root)
        return generate(root, cfg, workers=workers, progress=progress)


def _flat(d, prefix: str = "") -> dict:
    out = {}
    for k, v in (d or {}).items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def differing_params(info: dict, cfg: SynthConfig) -> list[str]:
    """``key: theirs -> wanted`` for every generation parameter in which a set's record differs
    from ``cfg`` (plus the generator version and hand model asset)."""
    theirs, mine = _flat(info.get("params")), _flat(cfg.to_dict())
    diff = [f"{k}: {theirs.get(k)!r} (there) vs {mine.get(k)!r} (wanted)" for k in sorted(set(theirs) | set(mine))
            if theirs.get(k) != mine.get(k)]
    if info.get("version") != SYNTH_VERSION:
        diff.append(f"generator version: {info.get('version')!r} (there) vs {SYNTH_VERSION} (wanted)")
    if not diff and info.get("hash") != cfg.param_hash():
        diff.append(f"hand model asset: {info.get('hand_model_sha1')!r} (there) vs {hand_model_fingerprint()!r} (wanted)")
    return diff


def check_target(root: str | os.PathLike, cfg: SynthConfig) -> bool:
    """May the synthetic set of ``cfg`` be generated into ``root``? True: it is already there (nothing
    to do); False: ``root`` is absent or an empty folder (generate). Anything else is refused with
    a ``FileExistsError`` that says what is there: nothing a user made, and no other synthetic set,
    is ever deleted or replaced (``out=`` of the generator and ``data.root`` alike)."""
    root = Path(root).expanduser()
    if is_complete(root, cfg):
        return True
    if not root.exists():
        return False
    if not root.is_dir():
        raise FileExistsError(f"synthetic: {root} exists and is not a folder; refusing to replace it")
    if not any(root.iterdir()):
        return False
    info = read_info(root)
    if info is None or info.get("format") != FORMAT:
        raise FileExistsError(
            f"synthetic: {root} is not empty and is not a handrecon synthetic set (no {META_FILE}); refusing to "
            "write into it (nothing was changed). Choose an empty or new folder (out=... / data.root=...)."
        )
    diff = differing_params(info, cfg)
    raise FileExistsError(
        f"synthetic: {root} holds a handrecon synthetic set made with other parameters ({'; '.join(diff)}); refusing "
        "to replace it (nothing was changed). Use its parameters, or another folder (data.root=... / out=...; "
        "data.root=null keeps one cache folder per parameter set)."
    )


def generation_lock(root: str | os.PathLike, timeout: float = -1):
    """An inter-process lock beside ``root`` (``.<name>.lock``) held while one process checks and
    generates it; others wait (``timeout`` seconds; -1: for ever)."""
    from filelock import FileLock

    root = Path(root).expanduser().resolve()
    root.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(root.parent / f".{root.name}.lock"), timeout=timeout)


# ---------------------------------------------------------------------------------------------- DataModule


def _make_datamodule_class():
    """Build :class:`SyntheticDataModule` on first use (keeps Lightning out of generator workers)."""
    from handrecon.data.datamodule import HandDataModule, build_dataset

    class SyntheticDataModule(HandDataModule):
        """The FreiHAND DataModule over the synthetic dataset, generated on first use.

        synthetic: mapping with ``n_train``, ``n_eval``, ``seed``, ``image_size`` (render size) and
        optionally ``workers`` and any other :class:`SynthConfig` field (``noise``: NoiseModel
        fields). root: explicit dataset folder (None: ``<cache_dir>/synthetic_<hash>``).
        train/val/test_dataset: FreiHANDDataset factories (``_partial_`` configs); ``root`` and
        ``detections`` are filled in once the data exists. Everything else: :class:`HandDataModule`.
        """

        def __init__(self, synthetic: dict | None = None, cache_dir: str | None = None, root: str | None = None,
                     **kwargs) -> None:
            super().__init__(root=root, **kwargs)
            opts = dict(synthetic or {})
            self.synth_workers = opts.pop("workers", None)
            self.synth_config = SynthConfig.from_dict(opts)
            self.cache_dir = cache_dir
            self._explicit_root = root
            self._orig_specs = (self.train_spec, self.val_spec, self.test_spec)

        def ensure_data(self) -> Path:
            """Generate the data if needed; sets and returns ``root``."""
            cfg = self.synth_config
            root = ensure_synthetic(
                self._explicit_root, cache_dir=self.cache_dir, workers=self.synth_workers,
                **{k: v for k, v in cfg.to_dict().items()},
            )  # fmt: skip
            self.root = str(root)
            return root

        def prepare_data(self) -> None:
            self.ensure_data()

        def setup(self, stage: str | None = None) -> None:
            root = Path(self.root) if self.root and is_complete(self.root, self.synth_config) else self.ensure_data()
            splits = ("training", "evaluation", "evaluation")
            self.train_spec, self.val_spec, self.test_spec = (
                None if spec is None else _bind(build_dataset, spec, root, split)
                for spec, split in zip(self._orig_specs, splits)
            )
            super().setup(stage)

    SyntheticDataModule.__module__ = __name__
    SyntheticDataModule.__qualname__ = "SyntheticDataModule"
    return SyntheticDataModule


def _spec_split(spec, default: str) -> str:
    """The ``split`` a dataset factory / config is set to (``default`` when it names none)."""
    kw = getattr(spec, "keywords", None)
    if isinstance(kw, dict) and "split" in kw:
        return str(kw["split"])
    if hasattr(spec, "get") and spec.get("split") is not None:
        return str(spec.get("split"))
    return default


def _bind(build, spec, root: Path, default_split: str):
    """A dataset factory with the generated folder and that split's detections filled in."""
    split = _spec_split(spec, default_split)
    return functools.partial(build, spec, root=str(root), detections=str(root / "detections" / f"{split}.json"))


def __getattr__(name: str):
    if name == "SyntheticDataModule":
        cls = _make_datamodule_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------- preview


def preview(path: str | os.PathLike, cfg: SynthConfig = SynthConfig(), n: int = 16, split: str = "training") -> Path:
    """Draw ``n`` samples with their noisy detections (colour = finger, size/alpha = confidence)
    and the ground-truth skeleton (white) into a grid figure at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from handrecon.joints import BONES

    cfg = dataclasses.replace(cfg, batch_size=min(int(cfg.batch_size), n))
    r = SynthRenderer(cfg)
    samples: list[Sample] = []
    for c in _chunks(n, int(cfg.batch_size)):
        samples += r.render(split, c)
    finger_col = ["k", "tab:red", "tab:orange", "tab:green", "tab:blue", "tab:purple"]
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.6 * rows))
    for ax, i, s in zip(np.ravel(axes), range(n), samples):
        ax.imshow(s.rgb)
        uv = project_np(s.xyz, s.K)
        for a, b in BONES:
            ax.plot(uv[[a, b], 0], uv[[a, b], 1], "-", color="white", lw=0.8, alpha=0.8)
        for j in range(NUM_JOINTS):
            c = s.det_conf[j]
            if c <= 0:
                continue
            col = finger_col[0 if j == 0 else 1 + (j - 1) // 4]
            ax.scatter(s.det_xy[j, 0], s.det_xy[j, 1], s=8 + 40 * c, c=col, alpha=0.3 + 0.7 * float(c),
                       edgecolors="white" if s.outlier[j] else "none", linewidths=0.8)
        ax.set_title(f"{i:08d}" + (" occl." if s.occluder else ""), fontsize=7)
    for ax in np.ravel(axes):
        ax.set_xlim(-0.5, cfg.image_size - 0.5)
        ax.set_ylim(cfg.image_size - 0.5, -0.5)
        ax.axis("off")
    fig.suptitle("handrecon synthetic: GT skeleton (white), detections (colour = finger, size/alpha = conf)", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=85)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------- CLI

_CLI_KEYS = {"out", "preview", "workers", "progress", "n_preview", "split"}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    from omegaconf import OmegaConf

    bad = [a for a in argv if "=" not in a]
    if bad:
        raise SystemExit(f"handrecon.data.synth: arguments must be key=value, got {bad}")
    opts = OmegaConf.to_container(OmegaConf.from_dotlist(argv), resolve=True)
    cli = {k: opts.pop(k) for k in list(opts) if k in _CLI_KEYS}
    try:
        cfg = SynthConfig.from_dict(opts)
    except (ValueError, TypeError) as e:
        raise SystemExit(f"handrecon.data.synth: {e}") from None
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if "preview" in cli:
        p = preview(cli["preview"], cfg, n=int(cli.get("n_preview", 16)), split=str(cli.get("split", "training")))
        print(f"wrote {p}")
        return 0
    if "out" not in cli:
        raise SystemExit("handrecon.data.synth: give out=DIR (generate) or preview=FILE.png")
    workers = int(cli.get("workers", max(1, min(4, os.cpu_count() or 1))))
    t0 = time.perf_counter()
    with generation_lock(cli["out"]):
        try:
            done = check_target(cli["out"], cfg)
        except FileExistsError as e:
            raise SystemExit(f"handrecon.data.synth: {e}") from None
        if done:
            print(f"{cli['out']} already holds this synthetic set (same parameters); nothing to do")
            return 0
        out = generate(cli["out"], cfg, workers=workers, progress=bool(cli.get("progress", True)))
    dt = time.perf_counter() - t0
    n = cfg.n_train + cfg.n_eval
    print(f"wrote {n} images to {out} in {dt:.1f} s ({n / dt:.1f} img/s, {workers} workers)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
