"""Overlay pictures for logging and the predict command (uint8 RGB, OpenCV drawing)."""

from __future__ import annotations

import cv2
import numpy as np

from handrecon.joints import BONES

#: one colour per finger (thumb, index, middle, ring, little), RGB
FINGER_COLOURS = ((230, 60, 60), (240, 180, 40), (60, 200, 80), (50, 150, 240), (180, 80, 220))


def _finger_of(j: int) -> int:
    return max(0, (j - 1) // 4)


def draw_keypoints(image: np.ndarray, uv: np.ndarray, conf: np.ndarray | None = None, radius: int = 2,
                   thickness: int = 1, min_conf: float = 0.05) -> np.ndarray:
    """image (H, W, 3) uint8 RGB, uv (21, 2) px -> a copy with the skeleton drawn (colour by finger)."""
    out = np.ascontiguousarray(image.copy())
    uv = np.asarray(uv, np.float64)
    ok = np.ones(len(uv), bool) if conf is None else np.nan_to_num(np.asarray(conf, np.float64), nan=0.0) > min_conf
    # a non-finite or absurdly far keypoint (a diverged prediction) is not drawn (cv2 cannot take it)
    ok &= np.isfinite(uv).all(-1) & (np.abs(uv) < 1e6).all(-1)
    for p, c in BONES:
        if ok[p] and ok[c]:
            a, b = tuple(int(round(x)) for x in uv[p]), tuple(int(round(x)) for x in uv[c])
            cv2.line(out, a, b, FINGER_COLOURS[_finger_of(c)], thickness, cv2.LINE_AA)
    for j, (x, y) in enumerate(uv):
        if ok[j]:
            cv2.circle(out, (int(round(x)), int(round(y))), radius, FINGER_COLOURS[_finger_of(j)] if j else (255, 255, 255), -1, cv2.LINE_AA)
    return out


def overlay_render(image: np.ndarray, rgb: np.ndarray, silhouette: np.ndarray, alpha: float = 0.85,
                   outline: tuple[int, int, int] = (40, 255, 40)) -> np.ndarray:
    """Composite a rendering (H, W, 3 float [0, 1]) over image (H, W, 3 uint8) with its silhouette
    (H, W, [0, 1]) and draw the silhouette's outline."""
    img = image.astype(np.float32) / 255.0
    a = (alpha * silhouette)[..., None]
    comp = (1 - a) * img + a * np.clip(rgb, 0, 1)
    out = np.ascontiguousarray((comp * 255).round().astype(np.uint8))
    mask = (silhouette > 0.5).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, outline, 1, cv2.LINE_AA)
    return out


def image_to_uint8(image_chw) -> np.ndarray:
    """(3, H, W) float tensor/array in [0, 1] -> (H, W, 3) uint8."""
    x = image_chw.detach().cpu().numpy() if hasattr(image_chw, "detach") else np.asarray(image_chw)
    return (np.clip(x.transpose(1, 2, 0), 0, 1) * 255).round().astype(np.uint8)
