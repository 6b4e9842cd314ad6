"""Crop, resize and augmentation of one sample: pure numpy functions, exact under perspective.

Every geometric step is a (3, 3) image-space matrix applied identically to the image, to the 2D
keypoints and to the intrinsics, so a 3D joint projected with the new K lands on its new 2D
keypoint (up to float error):

- crop / resize: affine A (old px -> crop px), ``K' = A @ K`` (:mod:`handrecon.geometry.camera`);
- in-plane rotation: the camera rotates about its optical axis, 3D points move by Rz and the
  image by the homography ``H = K Rz K^-1`` (``camera.rotation_homography``), K unchanged;
- scale / translation jitter: an affine about the crop centre, composed into A;
- horizontal flip: the image flips (``camera.hflip_matrix``), 3D x is mirrored, K becomes
  ``camera.mirror_K`` and a right hand becomes a left hand (``is_right`` toggles).

The image is resampled once with the composed matrix (``cv2.warpPerspective``).

Raw sample (input of :func:`apply`; full-image pixels, numpy)::

    image (H, W, 3) uint8 RGB     K (3, 3)            kp2d (21, 2)        kp2d_conf (21,)
    joints3d (21, 3) metres        verts3d (V, 3)      mask (H, W) float32 or None
    is_right bool                  crop (3, 3) affine full image -> out_size crop
    center (2,) full-image px the crop is centred on (the rotation keeps it at the crop centre)

:func:`apply` returns the same keys for the ``out_size`` crop (image float32 in [0, 1]);
:func:`to_model_sample` turns that into the tensors of the model's sample contract.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

import cv2
import numpy as np
import torch

from handrecon.geometry import camera

# ---------------------------------------------------------------- crop helpers


def crop_and_resize(image: np.ndarray, K: np.ndarray, kp2d: np.ndarray, center: Sequence[float], size: float,
                    out_size: int, border_value: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Square crop of side ``size`` px centred at ``center``, resized to ``out_size``.

    image (H, W, C) or (H, W), K (3, 3), kp2d (N, 2) -> (image (out, out[, C]), K' (3, 3), kp2d' (N, 2)).
    """
    A = camera.crop_matrix((float(center[0]), float(center[1])), float(size), int(out_size))
    out = warp(image, A, int(out_size), border_value=border_value)
    return out, camera.update_K(np.asarray(K, np.float64), A), camera.apply_homography(A, np.asarray(kp2d, np.float64))


def box_affine(center: Sequence[float], size: float, out_size: int) -> np.ndarray:
    """(3, 3) affine of a square crop box (``camera.crop_matrix``)."""
    if not (size > 0 and math.isfinite(size)):
        raise ValueError(f"crop box side must be a positive number of pixels, got {size}")
    return camera.crop_matrix((float(center[0]), float(center[1])), float(size), int(out_size))


def full_image_affine(width: int, height: int, out_size: int) -> np.ndarray:
    """(3, 3) affine that fits the whole (W, H) image into an ``out_size`` square: resized by its
    longer side and centred (letterbox). The identity when W == H == out_size."""
    L = max(width, height)
    # centre the W x H image in an L x L canvas (pixel-centre convention), then resize L -> out
    shift = np.array([[1.0, 0.0, (L - width) / 2.0], [0.0, 1.0, (L - height) / 2.0], [0.0, 0.0, 1.0]])
    return camera.resize_matrix((L, L), (out_size, out_size)) @ shift


def warp(image: np.ndarray, M: np.ndarray, out_size: int, border_value: float = 0.0,
         interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Resample ``image`` (H, W[, C]) into (out, out[, C]) with the (3, 3) pixel map M (old -> new).
    An identity map of a same-size image returns an exact copy."""
    h, w = image.shape[:2]
    if h == w == out_size and np.allclose(M, np.eye(3), atol=1e-12):
        return image.copy()
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise ValueError(f"cannot warp an image of shape {image.shape}")
    # downscaling by more than 2x aliases with bilinear sampling: blur first (sigma ~ 0.5 / scale)
    scale = math.sqrt(abs(np.linalg.det(M[:2, :2]))) if abs(M[2, :2]).max() < 1e-12 else 1.0
    if scale < 0.5:
        sigma = 0.5 / scale
        image = cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma)
    return cv2.warpPerspective(
        image, M, (out_size, out_size), flags=interpolation, borderMode=cv2.BORDER_CONSTANT,
        borderValue=(border_value,) * 4,
    )


# ---------------------------------------------------------------- augmentation config


def _pair(x, name: str) -> tuple[float, float]:
    if isinstance(x, (int, float)):
        return (float(x), float(x))
    try:
        lo, hi = (float(v) for v in x)
    except (TypeError, ValueError):
        raise ValueError(f"Augment.{name} must be a number or a pair [low, high], got {x!r}") from None
    return lo, hi


@dataclass
class Augment:
    """Random augmentation settings (all off when zero; see :func:`sample_params`). The defaults are
    the S2HAND reference's (FreiHAND): a uniform in-plane rotation in +-180 degrees and nothing else.

    scale: zoom range of the content (1.1 = hand 10% larger); rotation_deg: max in-plane rotation
    (exact under perspective); translate_frac: max crop-centre shift as a fraction of the crop;
    brightness / contrast / saturation: max relative change; hue: max hue shift as a fraction of
    the hue circle (0.5 = half a turn); hflip_prob: probability of a horizontal flip, which turns
    the right hand into a left hand (``is_right`` becomes False).
    """

    scale: tuple[float, float] = (1.0, 1.0)
    rotation_deg: float = 180.0
    translate_frac: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    hflip_prob: float = 0.0

    def __post_init__(self) -> None:
        lo, hi = _pair(self.scale, "scale")
        if not (0 < lo <= hi):
            raise ValueError(f"Augment.scale must satisfy 0 < low <= high, got {self.scale!r}")
        self.scale = (lo, hi)
        for f in ("rotation_deg", "translate_frac", "brightness", "contrast", "saturation", "hue", "hflip_prob"):
            v = float(getattr(self, f))
            if not (v >= 0 and math.isfinite(v)):
                raise ValueError(f"Augment.{f} must be a finite number >= 0, got {getattr(self, f)!r}")
            setattr(self, f, v)
        if self.hflip_prob > 1:
            raise ValueError(f"Augment.hflip_prob must be in [0, 1], got {self.hflip_prob}")
        if self.brightness >= 1 or self.contrast >= 1 or self.saturation >= 1:
            raise ValueError("Augment.brightness/contrast/saturation must be < 1 (relative change)")
        if self.hue > 0.5:
            raise ValueError(f"Augment.hue must be in [0, 0.5] (fraction of the hue circle), got {self.hue}")

    @classmethod
    def from_any(cls, aug) -> Augment | None:
        """None / Augment / a mapping of its fields (e.g. an OmegaConf node) -> Augment or None."""
        if aug is None or isinstance(aug, Augment):
            return aug
        if isinstance(aug, Mapping) or hasattr(aug, "items"):
            d = {k: v for k, v in dict(aug.items()).items() if not str(k).startswith("_")}
            known = {f.name for f in fields(cls)}
            unknown = set(d) - known
            if unknown:
                raise ValueError(f"unknown augmentation option(s) {sorted(unknown)}; known: {sorted(known)}")
            return cls(**d)
        raise TypeError(f"augment must be None, an Augment or a mapping of its fields, got {type(aug).__name__}")


@dataclass
class AugParams:
    """One draw of the augmentation (identity by default)."""

    scale: float = 1.0  # content zoom
    angle: float = 0.0  # radians, rotation about the optical axis
    shift: tuple[float, float] = (0.0, 0.0)  # crop-centre shift, fraction of the crop side
    flip: bool = False
    brightness: float = 1.0  # multiplicative factors
    contrast: float = 1.0
    saturation: float = 1.0
    hue: float = 0.0  # fraction of the hue circle


def sample_params(aug: Augment | None, rng: np.random.Generator) -> AugParams:
    if aug is None:
        return AugParams()
    u = rng.uniform
    lo, hi = aug.scale
    return AugParams(
        scale=float(math.exp(u(math.log(lo), math.log(hi)))) if hi > lo else float(lo),
        angle=math.radians(float(u(-aug.rotation_deg, aug.rotation_deg))),
        shift=(float(u(-aug.translate_frac, aug.translate_frac)), float(u(-aug.translate_frac, aug.translate_frac))),
        flip=bool(rng.random() < aug.hflip_prob),
        brightness=float(u(1 - aug.brightness, 1 + aug.brightness)),
        contrast=float(u(1 - aug.contrast, 1 + aug.contrast)),
        saturation=float(u(1 - aug.saturation, 1 + aug.saturation)),
        hue=float(u(-aug.hue, aug.hue)),
    )


# ---------------------------------------------------------------- geometry of one view


def view_transform(K: np.ndarray, crop: np.ndarray, center: Sequence[float], out_size: int,
                   params: AugParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Compose crop + augmentation.

    K (3, 3) full image, crop (3, 3) affine full image -> out, center (2,) full-image px.
    Returns M (3, 3) image/keypoint map (full px -> out px), K' (3, 3) for the output image and
    R (3, 3) to apply to 3D points (``X' = X @ R.T``; a rotation, times diag(-1, 1, 1) when flipped).
    """
    K = np.asarray(K, np.float64)
    Rz, H = camera.rotation_homography(K, params.angle)
    c = np.asarray(center, np.float64).reshape(1, 2)
    # keep the crop on the hand: the rotation moves the crop centre c to H c
    dc = camera.apply_homography(crop, c) - camera.apply_homography(crop @ H, c)
    A = np.array([[1.0, 0.0, dc[0, 0]], [0.0, 1.0, dc[0, 1]], [0.0, 0.0, 1.0]]) @ crop
    # zoom about the output centre, then shift
    co = (out_size - 1) / 2.0
    s = params.scale
    Z = np.array([
        [s, 0.0, (1 - s) * co - params.shift[0] * out_size],
        [0.0, s, (1 - s) * co - params.shift[1] * out_size],
        [0.0, 0.0, 1.0],
    ])
    A = Z @ A
    K_new = camera.update_K(K, A)
    M = A @ H
    R = Rz
    if params.flip:
        F = camera.hflip_matrix(out_size)
        M = F @ M
        K_new = camera.mirror_K(K_new, out_size)
        R = np.diag([-1.0, 1.0, 1.0]) @ Rz
    return M, K_new, R


# ---------------------------------------------------------------- photometric


def color_jitter(image: np.ndarray, params: AugParams) -> np.ndarray:
    """image (H, W, 3) float32 RGB in [0, 1] -> same, with brightness, contrast, saturation and hue
    changed by ``params`` (identity for the default AugParams)."""
    img = image.astype(np.float32, copy=True)
    if params.brightness != 1.0:
        img *= params.brightness
    if params.contrast != 1.0:
        mean = float(_gray(img).mean())
        img = (img - mean) * params.contrast + mean
    if params.saturation != 1.0:
        g = _gray(img)[..., None]
        img = (img - g) * params.saturation + g
    img = np.clip(img, 0.0, 1.0)
    if params.hue != 0.0:
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)  # float: H in degrees [0, 360)
        hsv[..., 0] = np.mod(hsv[..., 0] + 360.0 * params.hue, 360.0)
        img = np.clip(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), 0.0, 1.0)
    return img


def _gray(img: np.ndarray) -> np.ndarray:
    return img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114


# ---------------------------------------------------------------- one sample


def apply(sample: Mapping, rng: np.random.Generator | None = None, augment: Augment | None = None,
          out_size: int = 224, params: AugParams | None = None) -> dict:
    """Crop (with ``sample['crop']``) and augment one raw sample (see the module docstring).

    ``params`` fixes the draw (tests); otherwise it is drawn from ``augment`` with ``rng``.
    Returns a dict with image (S, S, 3) float32 in [0, 1], K, kp2d, kp2d_conf, joints3d,
    verts3d, mask ((S, S) float32 or None), is_right, and the ``params`` used.
    """
    if params is None:
        if augment is not None and rng is None:
            raise ValueError("apply: an rng is needed to draw augmentations")
        params = sample_params(augment, rng) if augment is not None else AugParams()
    image = np.asarray(sample["image"])
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"apply: image must be (H, W, 3), got {image.shape}")
    M, K_new, R = view_transform(sample["K"], np.asarray(sample["crop"], np.float64), sample["center"], out_size, params)

    out_img = warp(image, M, out_size)
    out_img = out_img.astype(np.float32) / 255.0 if out_img.dtype == np.uint8 else out_img.astype(np.float32)
    out_img = color_jitter(out_img, params)

    mask = sample.get("mask")
    out_mask = None if mask is None else warp(np.asarray(mask, np.float32), M, out_size)

    kp2d = camera.apply_homography(M, np.asarray(sample["kp2d"], np.float64))
    joints = np.asarray(sample["joints3d"], np.float64) @ R.T
    verts = np.asarray(sample["verts3d"], np.float64) @ R.T
    is_right = bool(sample.get("is_right", True))
    return {
        "image": out_img,
        "K": K_new,
        "kp2d": kp2d,
        "kp2d_conf": np.asarray(sample["kp2d_conf"], np.float32),
        "joints3d": joints,
        "verts3d": verts,
        "mask": out_mask,
        "is_right": (not is_right) if params.flip else is_right,
        "params": params,
    }


def to_model_sample(s: Mapping, *, has_3d: bool, name: str, index: int, appearance_weight: float = 1.0,
                    has_verts: bool | None = None) -> dict:
    """Output of :func:`apply` -> the model's sample contract (S = crop size)::

        image (3, S, S) float32 RGB in [0, 1], unnormalised   K (3, 3) float32 for the crop
        kp2d (21, 2) float32 detections in crop px (canonical order)   kp2d_conf (21,) float32
        joints3d (21, 3) float32 metres, camera frame (zeros if unknown)
        verts3d (V, 3) float32 (zeros (1, 3) for every sample of a dataset without vertices)
        has_3d bool   has_verts bool (verts3d is a real mesh; None: has_3d and more than one vertex)
        mask (S, S) float32 (zeros if unknown)   has_mask bool   is_right bool
        appearance_weight float32 scalar   name str   index int
        bad_skipped int (unreadable image files this sample stands in for; counted in the run's summary)
    """
    img = np.ascontiguousarray(np.asarray(s["image"], np.float32).transpose(2, 0, 1))  # (3, S, S)
    S = img.shape[-1]
    mask = s.get("mask")
    has_mask = mask is not None
    mask = np.zeros((S, S), np.float32) if mask is None else np.asarray(mask, np.float32)
    return {
        "image": torch.from_numpy(img),
        "K": torch.as_tensor(np.asarray(s["K"], np.float32)),
        "kp2d": torch.as_tensor(np.asarray(s["kp2d"], np.float32)),
        "kp2d_conf": torch.as_tensor(np.asarray(s["kp2d_conf"], np.float32)),
        "joints3d": torch.as_tensor(np.asarray(s["joints3d"], np.float32)),
        "verts3d": torch.as_tensor(np.asarray(s["verts3d"], np.float32)),
        "has_3d": torch.tensor(bool(has_3d)),
        "has_verts": torch.tensor(bool(has_3d and len(s["verts3d"]) > 1) if has_verts is None else bool(has_verts)),
        "mask": torch.as_tensor(np.ascontiguousarray(mask)),
        "has_mask": torch.tensor(bool(has_mask)),
        "is_right": torch.tensor(bool(s["is_right"])),
        "appearance_weight": torch.tensor(float(appearance_weight), dtype=torch.float32),
        "name": str(name),
        "index": int(index),
        "bad_skipped": 0,  # bad image files passed over for this sample (set by RobustDataset)
    }


SAMPLE_KEYS: tuple[str, ...] = (
    "image", "K", "kp2d", "kp2d_conf", "joints3d", "verts3d", "has_3d", "has_verts", "mask", "has_mask", "is_right",
    "appearance_weight", "name", "index", "bad_skipped",
)  # fmt: skip


def hand_box(kp2d: np.ndarray, conf: np.ndarray, joints: np.ndarray | None, K: np.ndarray, W: int, H: int,
             conf_threshold: float, pad: float, use_gt: bool = False) -> tuple[tuple[float, float], float]:
    """Square crop box (centre, side) of a hand: from the confident detections, or from the projected
    3D joints when asked (``use_gt``) or when no detection is confident; the whole image otherwise."""
    valid = conf >= conf_threshold
    if joints is not None and (use_gt or not valid.any()):
        return camera.square_box_from_points(camera.project_np(joints, K), pad=pad)
    if valid.any():
        return camera.square_box_from_points(kp2d, valid, pad=pad)
    return ((W - 1) / 2.0, (H - 1) / 2.0), float(max(W, H))
