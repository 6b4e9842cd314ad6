"""The camera: the one home of projection, intrinsics updates and the network's camera parameters.

Conventions
- Camera frame: x right, y down, z forward (OpenCV). Metres.
- Pixel coordinates: OpenCV's, pixel centres at integer coordinates; an image of width W spans
  u in [-0.5, W - 0.5].
- K: (..., 3, 3) intrinsics [[fx, 0, cx], [0, fy, cy], [0, 0, 1]].
- An image-space affine transform (crop, resize) is a (..., 3, 3) matrix A with last row
  [0, 0, 1] that maps old pixels to new pixels; the same A warps the image (cv2.warpAffine with
  A[:2]) and updates the intrinsics: K' = A @ K.

Network parameterisation (S2HAND): the hand is placed as X_cam = T + |s| * R(rot) @ X_model and
projected with the full perspective K. The weak-perspective model u = sigma * X_xy + t_uv (pixels)
is related to it by sigma = f * |s| / T_z and t_uv = c + f * T_xy / T_z; see
:func:`weak_to_translation` and :func:`translation_to_weak`.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def project(points: torch.Tensor, K: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Perspective projection. points: (B, N, 3) camera frame, K: (B, 3, 3) -> uv (B, N, 2) pixels."""
    p = points @ K.transpose(-1, -2)  # (B, N, 3)
    z = p[..., 2:3]
    z = torch.where(z.abs() < eps, torch.full_like(z, eps), z)
    return p[..., :2] / z


def backproject(uv: torch.Tensor, z: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`project` for an upper-triangular K (closed form, ONNX-exportable).

    uv (B, 2) pixels, z (B,) depth -> (B, 3) camera-frame points.
    """
    y = (uv[:, 1] - K[:, 1, 2]) / K[:, 1, 1]
    x = (uv[:, 0] - K[:, 0, 2] - K[:, 0, 1] * y) / K[:, 0, 0]
    return torch.stack([x * z, y * z, z], -1)


def project_np(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    """numpy twin of :func:`project` for data code. points (..., N, 3), K (..., 3, 3) -> (..., N, 2)."""
    p = points @ np.swapaxes(K, -1, -2)
    return p[..., :2] / p[..., 2:3]


def place(points: torch.Tensor, rot: torch.Tensor, scale: torch.Tensor, transl: torch.Tensor) -> torch.Tensor:
    """X_cam = T + |s| * R @ X. points (B, N, 3), rot (B, 3, 3), scale (B, 1) or (B,), transl (B, 3)."""
    s = scale.reshape(-1, 1, 1).abs()
    return transl[:, None, :] + s * (points @ rot.transpose(-1, -2))


def weak_perspective_project(points: torch.Tensor, sigma: torch.Tensor, t_uv: torch.Tensor) -> torch.Tensor:
    """u = sigma * X_xy + t_uv. points (B, N, 3), sigma (B,) px/m, t_uv (B, 2) px -> (B, N, 2)."""
    return sigma.reshape(-1, 1, 1) * points[..., :2] + t_uv[:, None, :]


def weak_to_translation(sigma: torch.Tensor, t_uv: torch.Tensor, K: torch.Tensor, scale: torch.Tensor | float = 1.0):
    """Weak-perspective (sigma, t_uv) -> translation T (B, 3) of the perspective model with scale ``scale``.

    The perspective projection of a point at the hand's origin then equals t_uv exactly, and
    sizes near the origin match sigma to first order.
    """
    f = 0.5 * (K[:, 0, 0] + K[:, 1, 1])
    s = torch.as_tensor(scale, dtype=sigma.dtype, device=sigma.device).abs().expand_as(sigma)
    tz = f * s / sigma
    tx = (t_uv[:, 0] - K[:, 0, 2]) * tz / K[:, 0, 0]
    ty = (t_uv[:, 1] - K[:, 1, 2]) * tz / K[:, 1, 1]
    return torch.stack([tx, ty, tz], -1)


def translation_to_weak(transl: torch.Tensor, K: torch.Tensor, scale: torch.Tensor | float = 1.0):
    """Inverse of :func:`weak_to_translation`: T (B, 3) -> (sigma (B,), t_uv (B, 2))."""
    f = 0.5 * (K[:, 0, 0] + K[:, 1, 1])
    s = torch.as_tensor(scale, dtype=transl.dtype, device=transl.device).abs().expand_as(transl[:, 2])
    sigma = f * s / transl[:, 2]
    t_uv = torch.stack(
        [K[:, 0, 0] * transl[:, 0] / transl[:, 2] + K[:, 0, 2], K[:, 1, 1] * transl[:, 1] / transl[:, 2] + K[:, 1, 2]], -1
    )
    return sigma, t_uv


# ---------------------------------------------------------------- image-space transforms (numpy)


def crop_matrix(center: tuple[float, float], size: float, out_size: int) -> np.ndarray:
    """(3, 3) affine that maps the square box of side ``size`` px centred at ``center`` onto an
    ``out_size`` x ``out_size`` image: box edges c +- size/2 onto the image edges -0.5 and
    out_size - 0.5, so the centre lands on (out_size - 1) / 2 (pixel-centre convention)."""
    s = out_size / float(size)
    cx, cy = center
    tx = -s * (cx - size / 2.0) - 0.5
    ty = -s * (cy - size / 2.0) - 0.5
    return np.array([[s, 0.0, tx], [0.0, s, ty], [0.0, 0.0, 1.0]])


def resize_matrix(in_size: tuple[int, int], out_size: tuple[int, int]) -> np.ndarray:
    """(3, 3) affine for resizing a (W, H) image to (W', H') with the pixel-centre convention."""
    sx, sy = out_size[0] / in_size[0], out_size[1] / in_size[1]
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


def hflip_matrix(width: int) -> np.ndarray:
    """(3, 3) affine of a horizontal flip: u' = W - 1 - u. Pair it with mirroring X (x -> -x) in 3D:
    flipping the image of a right hand shows a left hand, and ``A @ K @ diag(-1, 1, 1)`` keeps
    projection exact for mirrored points."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def update_K(K: np.ndarray, A: np.ndarray) -> np.ndarray:
    """Intrinsics after an image-space affine transform A (old px -> new px): K' = A @ K."""
    return A @ K


def mirror_K(K: np.ndarray, width: int) -> np.ndarray:
    """Intrinsics for the horizontally flipped image of x-mirrored 3D points (still upper-triangular)."""
    K2 = K.copy()
    K2[..., 0, 2] = width - 1.0 - K[..., 0, 2]
    return K2


def rotation_homography(K: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """In-plane rotation augmentation that stays exact under perspective.

    Rotating the camera frame about its optical axis by ``angle`` (radians) moves 3D points by
    Rz = rot_z(angle) and warps the image by the homography H = K Rz K^-1 (for any K).
    Returns (Rz (3, 3), H (3, 3)); apply Rz to 3D points (X' = X @ Rz.T), H to the image
    (cv2.warpPerspective) and to 2D points; K is unchanged.
    """
    c, s = math.cos(angle), math.sin(angle)
    Rz = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    H = K @ Rz @ np.linalg.inv(K)
    return Rz, H


def apply_homography(H: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """uv (..., N, 2) -> (..., N, 2) under H (3, 3) (an affine A is a special case)."""
    p = np.concatenate([uv, np.ones(uv.shape[:-1] + (1,))], -1) @ H.T
    return p[..., :2] / p[..., 2:3]


#: FreiHAND's average focal length in units of the crop side (fx ~ 580 px for 224 px crops)
FOCAL_RATIO = 2.6


def crop_intrinsics(size: int, focal_ratio: float = FOCAL_RATIO) -> np.ndarray:
    """(3, 3) K of a square crop of unknown intrinsics: fx = fy = focal_ratio * size, centred."""
    f, c = focal_ratio * size, (size - 1) / 2.0
    return np.array([[f, 0.0, c], [0.0, f, c], [0.0, 0.0, 1.0]])


def square_box_from_points(uv: np.ndarray, valid: np.ndarray | None = None, pad: float = 1.3,
                           min_size: float = 32.0) -> tuple[tuple[float, float], float]:
    """Square crop box around 2D points: (centre (cx, cy), side) with the side ``pad`` x the larger extent."""
    pts = uv if valid is None else uv[valid.astype(bool)]
    if len(pts) == 0:
        raise ValueError("square_box_from_points: no valid 2D point to build a crop box from")
    lo, hi = pts.min(0), pts.max(0)
    centre = (lo + hi) / 2.0
    side = max(float((hi - lo).max()) * pad, min_size)
    return (float(centre[0]), float(centre[1])), side
