"""The z-buffer's scanline rasteriser as one compiled CPU loop (numba), for ``ZBufferRenderer``.

Same arithmetic as the tensor implementation in :mod:`handrecon.render.zbuffer` (float64 face
coefficients, the same row spans, so the same pixel centres are covered); only the order in which
faces are visited differs, so at exact depth ties (a shared edge) either face may win. Compiled on
first use and cached on disk by numba (``cache=True``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True)
def rasterize(uv, z, faces, cattr, facing, cull, near, tol, att, sil, depth):  # pragma: no cover - compiled
    """uv (B, V, 2) px, z (B, V) m, faces (F, 3), cattr (B, F, 3, C) per face corner attributes (lit
    colours, or UV and shading factor) (all float64 but faces); facing (B,) sign of fx fy; writes the
    interpolated attributes into att (B, H, W, C) (the rgb image with the background already in it
    when C = 3), sil and depth (B, H, W) (zeros) in place."""
    B = uv.shape[0]
    F = faces.shape[0]
    C = cattr.shape[3]
    H, W = sil.shape[1], sil.shape[2]
    qbuf = np.empty((H, W))
    fbuf = np.empty((H, W), np.int64)
    num = np.empty((F, 3, C))  # per face: attribute numerator = nc + nx x + ny y (per channel)
    a = np.empty(3)
    alpha = np.empty(3)
    beta = np.empty(3)
    c = np.array([1.0 + tol, tol, tol])
    for bi in range(B):
        qbuf[:] = -np.inf
        fbuf[:] = -1
        for j in range(F):
            i0, i1, i2 = faces[j, 0], faces[j, 1], faces[j, 2]
            z0, z1, z2 = z[bi, i0], z[bi, i1], z[bi, i2]
            if min(z0, z1, z2) <= near:
                continue
            x0, y0 = uv[bi, i0, 0], uv[bi, i0, 1]
            e1x, e1y = uv[bi, i1, 0] - x0, uv[bi, i1, 1] - y0
            e2x, e2y = uv[bi, i2, 0] - x0, uv[bi, i2, 1] - y0
            A = e1x * e2y - e1y * e2x
            if not math.isfinite(A) or A == 0.0:
                continue
            if cull and A * facing[bi] >= 0.0:
                continue
            ymin = min(y0, uv[bi, i1, 1], uv[bi, i2, 1])
            ymax = max(y0, uv[bi, i1, 1], uv[bi, i2, 1])
            by0 = max(math.ceil(ymin), 0.0)
            by1 = min(math.floor(ymax), H - 1.0)
            if by1 < by0:
                continue
            a1, b1, a2, b2 = e2y / A, -e2x / A, -e1y / A, e1x / A
            a[0], a[1], a[2] = -(a1 + a2), a1, a2
            for k in range(3):  # on row y, l_k >= -tol where x >= (a_k > 0) or <= (a_k < 0) alpha_k + beta_k y
                bk = -(b1 + b2) if k == 0 else (b1 if k == 1 else b2)
                if a[k] != 0.0:
                    beta[k] = -bk / a[k]
                    alpha[k] = x0 + (bk * y0 - c[k]) / a[k]
            iz0, iz1, iz2 = 1.0 / z0, 1.0 / z1, 1.0 / z2
            qx = (iz1 - iz0) * a1 + (iz2 - iz0) * a2
            qy = (iz1 - iz0) * b1 + (iz2 - iz0) * b2
            qc = iz0 - qx * x0 - qy * y0
            for ch in range(C):
                n0, n1, n2 = cattr[bi, j, 0, ch] * iz0, cattr[bi, j, 1, ch] * iz1, cattr[bi, j, 2, ch] * iz2
                nx = (n1 - n0) * a1 + (n2 - n0) * a2
                ny = (n1 - n0) * b1 + (n2 - n0) * b2
                num[j, 0, ch] = n0 - nx * x0 - ny * y0
                num[j, 1, ch] = nx
                num[j, 2, ch] = ny
            y = by0
            while y <= by1:
                lo, hi = -np.inf, np.inf
                for k in range(3):
                    if a[k] > 0.0:
                        lo = max(lo, alpha[k] + beta[k] * y)
                    elif a[k] < 0.0:
                        hi = min(hi, alpha[k] + beta[k] * y)
                xs_f, xe_f = max(math.ceil(lo), 0.0), min(math.floor(hi), W - 1.0)
                if not xs_f <= xe_f:  # an empty row (or a non-finite bound: never cast to int)
                    y += 1.0
                    continue
                xs, xe, yi = int(xs_f), int(xe_f), int(y)
                for x in range(xs, xe + 1):
                    q = qc + qy * y + qx * x  # 1/z: the nearest surface has the largest
                    if q > qbuf[yi, x]:
                        qbuf[yi, x] = q
                        fbuf[yi, x] = j
                y += 1.0
        for yi in range(H):
            for x in range(W):
                j = fbuf[yi, x]
                if j < 0:
                    continue
                q = qbuf[yi, x]
                for ch in range(C):
                    att[bi, yi, x, ch] = (num[j, 0, ch] + num[j, 1, ch] * x + num[j, 2, ch] * yi) / q
                sil[bi, yi, x] = 1.0
                depth[bi, yi, x] = 1.0 / q
