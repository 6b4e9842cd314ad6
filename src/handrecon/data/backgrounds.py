"""Procedural cluttered backgrounds and occluders for the synthetic dataset.

All functions are pure: images come from the ``numpy.random.Generator`` given and nothing else, so
a seed gives the same pixels. Images are float32 RGB in [0, 1], (H, W, 3).

A background is a base layer (a colour gradient, multi-scale value noise, or stripes) with random
clutter drawn on top (filled and outlined rectangles, circles, ellipses, polygons, lines), some
semi-transparent, and a final mild blur. An occluder is one random coloured shape (ellipse,
rectangle, polygon or a thick "stick") placed over part of the hand; :func:`draw_occluder` returns
the image with it and its mask, from which per-joint occlusion is read.
"""

from __future__ import annotations

import cv2
import numpy as np

SHIFT = 4  # cv2 drawing with sub-pixel precision: coordinates are multiplied by 2**SHIFT
_ONE = 1 << SHIFT


def random_colour(rng: np.random.Generator, saturation: tuple[float, float] = (0.0, 1.0),
                  value: tuple[float, float] = (0.1, 1.0)) -> np.ndarray:
    """A random RGB colour (3,) in [0, 1], uniform hue, saturation and value in the given ranges."""
    h = rng.uniform(0.0, 1.0)
    s = rng.uniform(*saturation)
    v = rng.uniform(*value)
    return hsv_to_rgb(h, s, v)


def hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    """HSV (each in [0, 1]) -> RGB (3,) in [0, 1]."""
    k = (np.array([5.0, 3.0, 1.0]) + h * 6.0) % 6.0
    return v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def linear_gradient(size: tuple[int, int], c0: np.ndarray, c1: np.ndarray, angle: float) -> np.ndarray:
    """(H, W, 3) gradient from colour c0 to c1 along direction ``angle`` (radians) across the image."""
    H, W = size
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    d = np.cos(angle) * (x / max(W - 1, 1)) + np.sin(angle) * (y / max(H - 1, 1))
    d = (d - d.min()) / max(float(d.max() - d.min()), 1e-6)
    return (c0[None, None, :] * (1.0 - d[..., None]) + c1[None, None, :] * d[..., None]).astype(np.float32)


def value_noise(size: tuple[int, int], rng: np.random.Generator, octaves: tuple[int, ...] = (2, 4, 8, 16, 32),
                persistence: float = 0.6) -> np.ndarray:
    """(H, W) multi-scale value noise in [0, 1]: random grids of ``octaves`` cells per side,
    bicubically upsampled, summed with amplitude ``persistence ** k`` and normalised."""
    H, W = size
    out = np.zeros((H, W), np.float32)
    amp, total = 1.0, 0.0
    for cells in octaves:
        grid = rng.random((cells + 1, cells + 1)).astype(np.float32)
        out += amp * cv2.resize(grid, (W, H), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= persistence
    out /= total
    lo, hi = float(out.min()), float(out.max())
    return (out - lo) / max(hi - lo, 1e-6)


def colour_map(t: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Map t (H, W) in [0, 1] through a piecewise-linear palette colours (K, 3) -> (H, W, 3)."""
    K = len(colours)
    x = np.clip(t, 0.0, 1.0) * (K - 1)
    i = np.minimum(np.floor(x).astype(np.int64), K - 2)
    f = (x - i)[..., None]
    return (colours[i] * (1.0 - f) + colours[i + 1] * f).astype(np.float32)


def stripes(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) soft stripes (or a checkerboard) of two random colours at a random angle and period."""
    H, W = size
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    period = rng.uniform(0.05, 0.3) * max(H, W)
    a = rng.uniform(0.0, np.pi)
    t = 0.5 + 0.5 * np.sin(2 * np.pi * (np.cos(a) * x + np.sin(a) * y) / period)
    if rng.random() < 0.3:  # checker
        t2 = 0.5 + 0.5 * np.sin(2 * np.pi * (-np.sin(a) * x + np.cos(a) * y) / period)
        t = (t > 0.5) ^ (t2 > 0.5)
    return colour_map(t.astype(np.float32), np.stack([random_colour(rng), random_colour(rng)]))


def _pt(p: np.ndarray) -> tuple[int, int]:
    return int(round(float(p[0]) * _ONE)), int(round(float(p[1]) * _ONE))


def draw_random_shape(img: np.ndarray, rng: np.random.Generator, centre: np.ndarray, radius: float,
                      colour: np.ndarray, kind: str | None = None, filled: bool = True,
                      thickness: int = 2) -> np.ndarray:
    """Draw one shape of about ``radius`` px around ``centre`` (2,) into a (H, W) or (H, W, 3)
    float image in place with ``colour`` (scalar for masks). kind: rect | circle | ellipse |
    polygon | line | stick (None: random). Returns img."""
    kinds = ("rect", "circle", "ellipse", "polygon", "line", "stick")
    kind = kinds[int(rng.integers(len(kinds)))] if kind is None else kind
    col = tuple(float(c) for c in np.atleast_1d(colour))
    th = -1 if filled else max(int(thickness), 1)
    if kind == "rect":
        a = rng.uniform(0.0, np.pi)
        w, h = radius * rng.uniform(0.5, 1.5), radius * rng.uniform(0.5, 1.5)
        box = cv2.boxPoints(((float(centre[0]), float(centre[1])), (2 * w, 2 * h), float(np.degrees(a))))
        pts = np.array([_pt(p) for p in box], np.int32)
        if filled:
            cv2.fillPoly(img, [pts], col, cv2.LINE_AA, SHIFT)
        else:
            cv2.polylines(img, [pts], True, col, th, cv2.LINE_AA, SHIFT)
    elif kind in ("circle", "ellipse"):
        ax = (radius, radius) if kind == "circle" else (radius * rng.uniform(0.4, 1.4), radius * rng.uniform(0.4, 1.4))
        axes = (int(round(ax[0] * _ONE)), int(round(ax[1] * _ONE)))
        cv2.ellipse(img, _pt(centre), axes, float(rng.uniform(0, 180)), 0.0, 360.0, col, th, cv2.LINE_AA, SHIFT)
    elif kind == "polygon":
        n = int(rng.integers(3, 8))
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        r = radius * rng.uniform(0.5, 1.3, n)
        pts = np.array([_pt(centre + np.array([np.cos(t), np.sin(t)]) * rr) for t, rr in zip(ang, r)], np.int32)
        if filled:
            cv2.fillPoly(img, [pts], col, cv2.LINE_AA, SHIFT)
        else:
            cv2.polylines(img, [pts], True, col, th, cv2.LINE_AA, SHIFT)
    elif kind in ("line", "stick"):
        a = rng.uniform(0.0, np.pi)
        d = np.array([np.cos(a), np.sin(a)]) * radius * rng.uniform(1.0, 2.0)
        w = thickness if kind == "line" else max(int(round(radius * rng.uniform(0.3, 0.7))), 2)
        cv2.line(img, _pt(centre - d), _pt(centre + d), col, int(w), cv2.LINE_AA, SHIFT)
    else:
        raise ValueError(f"draw_random_shape: unknown kind {kind!r}; expected one of {kinds}")
    return img


def random_background(size: int | tuple[int, int], rng: np.random.Generator, clutter: tuple[int, int] = (4, 20)
                      ) -> np.ndarray:
    """A cluttered background (H, W, 3) float32 in [0, 1]."""
    H, W = (size, size) if np.isscalar(size) else tuple(size)
    kind = rng.random()
    if kind < 0.35:
        img = linear_gradient((H, W), random_colour(rng), random_colour(rng), rng.uniform(0, 2 * np.pi))
    elif kind < 0.8:
        n_col = int(rng.integers(2, 5))
        palette = np.stack([random_colour(rng) for _ in range(n_col)])
        img = colour_map(value_noise((H, W), rng, persistence=rng.uniform(0.4, 0.8)), palette)
    else:
        img = stripes((H, W), rng)
    img = np.ascontiguousarray(img)
    scale = max(H, W)
    for _ in range(int(rng.integers(clutter[0], clutter[1] + 1))):
        centre = rng.uniform(-0.1, 1.1, 2) * np.array([W, H])
        radius = scale * rng.uniform(0.03, 0.3)
        colour = random_colour(rng)
        filled = rng.random() < 0.7
        thickness = int(max(1, round(scale * rng.uniform(0.005, 0.03))))
        if rng.random() < 0.3:  # semi-transparent layer
            layer = img.copy()
            draw_random_shape(layer, rng, centre, radius, colour, filled=filled, thickness=thickness)
            alpha = rng.uniform(0.3, 0.7)
            img = (1 - alpha) * img + alpha * layer
        else:
            draw_random_shape(img, rng, centre, radius, colour, filled=filled, thickness=thickness)
    sigma = rng.uniform(0.0, 1.5) * scale / 224.0
    if sigma > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def draw_occluder(img: np.ndarray, rng: np.random.Generator, centre: np.ndarray, radius: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Draw a random opaque occluder of about ``radius`` px at ``centre`` over img (H, W, 3).

    Returns (new image (H, W, 3), mask (H, W) float32 coverage in [0, 1]); img is not modified.
    The occluder is a gradient-coloured (sometimes noise-textured) shape in fairly saturated colours.
    """
    H, W = img.shape[:2]
    kind = ("rect", "ellipse", "polygon", "stick")[int(rng.integers(4))]
    mask = np.zeros((H, W), np.float32)
    draw_random_shape(mask, rng, centre, radius, 1.0, kind=kind)
    c0, c1 = random_colour(rng, (0.3, 1.0), (0.15, 1.0)), random_colour(rng, (0.3, 1.0), (0.15, 1.0))
    tex = linear_gradient((H, W), c0, c1, rng.uniform(0, 2 * np.pi))
    if rng.random() < 0.5:
        tex = tex * (0.8 + 0.4 * value_noise((H, W), rng, octaves=(4, 8, 16)))[..., None]
    m = np.clip(mask, 0.0, 1.0)[..., None]
    out = img * (1.0 - m) + np.clip(tex, 0.0, 1.0) * m
    return out.astype(np.float32), m[..., 0]
