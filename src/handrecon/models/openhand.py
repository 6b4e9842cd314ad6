"""handrecon's open hand model: a procedurally generated right hand in MANO's file format.

MANO (Romero et al.) is licensed and cannot ship with handrecon, so handrecon builds its own hand,
deterministically, from a handful of anatomical measurements (this file), and ships the result as
``assets/OPENHAND_RIGHT.pkl`` (CC0 / Apache-2.0). Regenerate it with::

    python -m handrecon.models.openhand --out src/handrecon/models/assets/OPENHAND_RIGHT.pkl
    python -m handrecon.models.openhand --preview docs/openhand_preview.png

Construction
------------
* Geometry: an implicit surface (signed-distance-like function) = a lofted rounded palm, smoothly
  blended (polynomial smooth-min) with tapered round cones for the phalanges and the thumb's
  metacarpal (the thenar eminence). Lengths are adult (wrist joint to middle fingertip 18.3
  cm; middle knuckle to the middle finger's first joint 28.2 mm, the method's ``mscale`` bone).
* Mesh: one closed surface of tubes (two triangles per quad): a palm tube from the wrist stub
  (closed by a rounded cap) to a distal loop made of the five finger base rings (10 vertices each;
  dorsal halves from thumb to little finger, palmar halves back), a web strip between each pair of
  neighbouring fingers (three extra rungs between thumb and index: the first web space) and two
  extra vertices on the little finger's side; five finger tubes with rounded tips that end in one
  pole vertex each (the fingertip keypoints, ``tip_vertex_ids``). The vertices are projected onto
  the implicit surface with rounds of tangential relaxation. The result is watertight, consistently
  oriented (outward) and genus 0; V = 1544, F = 3084.
* Rig: MANO's 16 joints and kinematic tree (:data:`handrecon.joints.MANO_PARENTS`); the joint
  regressor averages the vertex ring around each joint (non-negative weights fitted to hit the
  designed joint exactly); skinning weights are smooth-step blends along each finger around its
  joints, diffused over the mesh.
* Shape space (``shapedirs``, 10 components, one unit ~ one standard deviation of adult variation):
  central differences of the generator for each anatomical change of :data:`SHAPE_COMPONENTS`, made
  orthogonal in that order (:func:`shape_blendshapes`).
* Pose space: ``hands_mean`` is a relaxed, slightly curled hand
  (:func:`handrecon.models.anatomy.relaxed_pose`); ``hands_components`` (orthonormal rows, by
  decreasing variance) are the principal directions of 20000 poses from
  :func:`handrecon.models.anatomy.sample_natural_pose` about that mean, so PCA coefficients span
  natural poses (``hands_pca_variance``: the variance along each).
* Pose correctives (``posedirs``, stored as float16): learnt like MANO's, from the generator itself:
  for 96 natural poses, the skinned vertices are projected onto the ideal posed surface (the implicit
  surface rebuilt with every capsule carried by its bone), and a per-vertex ridge regression on the
  pose features (R_j - I) of the joints that move the vertex predicts the rest-frame correction,
  smoothed once over the surface (:func:`pose_blendshapes`). On held-out natural poses this takes the
  distance to the ideal surface from about 1.1 mm to 0.4 mm RMS (99th percentile 5.5 mm -> 1.3 mm):
  rounder knuckles, less volume loss at bent joints.

Axes (as in MANO's right hand): fingers point along -x from the wrist, the thumb is on the +z side,
the palm faces -y (the back of the hand +y); metres.
"""

from __future__ import annotations

import argparse
import dataclasses
import pickle
from pathlib import Path

import numpy as np
import scipy.optimize
import scipy.sparse

from handrecon.joints import MANO_JOINT_NAMES, MANO_PARENTS, TIP_ORDER

OPENHAND_VERSION = "1.0.0"
ASSET_PATH = Path(__file__).resolve().parent / "assets" / "OPENHAND_RIGHT.pkl"

#: the 10 shape components: (name, meaning of +1)
SHAPE_COMPONENTS: tuple[tuple[str, str], ...] = (
    ("size", "whole hand 6% larger (uniform scale about the wrist joint)"),
    ("finger_length", "the four fingers 5% longer, thumb phalanges 4% longer"),
    ("palm_width", "palm and knuckle line 6% wider"),
    ("palm_thickness", "palm 10% thicker, thenar 6% fuller"),
    ("finger_thickness", "fingers and thumb phalanges 8% thicker"),
    ("thumb_length", "thumb (metacarpal and phalanges) 7% longer"),
    ("index_ring_ratio", "index finger 4% longer and ring finger 4% shorter"),
    ("little_length", "little finger 7% longer"),
    ("palm_length", "palm 5% longer (knuckles further from the wrist)"),
    ("wrist_girth", "wrist and forearm stub 8% wider and thicker"),
)

LONG_FINGERS = ("index", "middle", "ring", "little")
#: MANO joint indices (knuckle, middle, tip joint) of each finger
CHAIN = {"index": (1, 2, 3), "middle": (4, 5, 6), "little": (7, 8, 9), "ring": (10, 11, 12), "thumb": (13, 14, 15)}

# ---------------------------------------------------------------------------------------------------
# anatomical design (design frame: a = from the wrist towards the fingers, b = towards the thumb,
# c = towards the back of the hand; right hand, wrist joint at the origin, metres)

_MCP = {"index": (0.0940, 0.0240, -0.0020), "middle": (0.1010, 0.0020, 0.0), "ring": (0.0960, -0.0180, -0.0020),
        "little": (0.0870, -0.0350, -0.0050)}
_FAN_DEG = {"index": 5.0, "middle": 0.0, "ring": -6.0, "little": -13.0}
_SEG = {"index": (0.0265, 0.0235, 0.0245), "middle": (0.0282, 0.0270, 0.0265), "ring": (0.0270, 0.0255, 0.0250),
        "little": (0.0210, 0.0190, 0.0225)}
_RAD = {"index": (0.0100, 0.0090, 0.0080, 0.0071), "middle": (0.0102, 0.0092, 0.0082, 0.0073),
        "ring": (0.0097, 0.0087, 0.0078, 0.0069), "little": (0.0087, 0.0077, 0.0069, 0.0062)}
_THUMB_CMC = (0.0200, 0.0220, -0.0130)
_THUMB_DIR_DEG = ((42.0, -22.0), (30.0, -18.0))  # (yaw towards +b, pitch towards +c): metacarpal, phalanges
_THUMB_LEN = (0.0370, 0.0290, 0.0250)  # CMC->MCP, MCP->IP, IP->tip
_THUMB_RAD = (0.0135, 0.0115, 0.0098, 0.0085)
# palm cross-section profile along a: control points, half-width W, centre b, half-thickness H, centre c
_PALM_A = (-0.017, 0.000, 0.030, 0.060, 0.092)
_PALM_W = (0.0270, 0.0290, 0.0360, 0.0395, 0.0400)
_PALM_B = (-0.0030, -0.0030, -0.0040, -0.0050, -0.0050)
_PALM_H = (0.0165, 0.0160, 0.0150, 0.0130, 0.0115)
_PALM_C = (-0.0010, -0.0010, -0.0020, -0.0030, -0.0035)
_PALM_END = 0.006  # distal end of the palm block beyond the knuckle line
_ROUND_END = 0.009  # rounding of the palm block's ends
_K_THENAR, _K_FINGER, _K_THUMB = 0.016, 0.008, 0.010  # smooth-min radii
_WRIST_X = 0.0957  # MANO-like placement: x = _WRIST_X - a, y = c, z = b

# mesh resolution (fixed, so every shape has the same topology)
_K = 10  # vertices around a finger ring (even)
_PALM_ROWS = 14
_FINGER_STEPS = {"index": (4, 3, 3), "middle": (4, 4, 3), "ring": (4, 4, 3), "little": (3, 3, 3)}
_THUMB_STEPS = (3, 4, 3)  # thumb base ring -> MCP, MCP -> IP, IP -> tip sphere centre
_CAP_DEG = (35.0, 65.0)  # latitude of the rounded fingertip rings
_SIDE = 2  # extra palm vertices on the ulnar side of the knuckle row
_WEB_RUNGS = 3  # extra vertex pairs in the web between thumb and index
_THUMB_BASE = 0.45  # the thumb's first ring, as a fraction of the way from CMC to MCP
_RELAX_ITERS = 30
_POSEDIR_SMOOTH = 1  # neighbour-averaging rounds of the pose correctives


@dataclasses.dataclass
class Design:
    joints: np.ndarray  # (16, 3) MANO order, design frame
    tips: np.ndarray  # (5, 3) thumb, index, middle, ring, little fingertip surface points
    radii: dict  # finger -> (4,) radii at [joint1, joint2, joint3, tip sphere]
    tip_dir: dict  # finger -> (3,) unit direction of the last phalanx
    palm: dict  # palm profile arrays
    scale: float


def _unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _dir(yaw_deg, pitch_deg):
    y, p = np.deg2rad(yaw_deg), np.deg2rad(pitch_deg)
    return np.array([np.cos(p) * np.cos(y), np.cos(p) * np.sin(y), np.sin(p)])


def design(beta=None) -> Design:
    """The hand's joints, radii and palm profile for shape ``beta`` (10,) (design frame)."""
    beta = np.zeros(10) if beta is None else np.asarray(beta, np.float64)
    size = 1 + 0.06 * beta[0]
    flen, pwid, pthk, fthk = 1 + 0.05 * beta[1], 1 + 0.06 * beta[2], 1 + 0.10 * beta[3], 1 + 0.08 * beta[4]
    tlen, ir, llen, plen, wg = 1 + 0.07 * beta[5], 0.04 * beta[6], 1 + 0.07 * beta[7], 1 + 0.05 * beta[8], beta[9]
    b_ref = -0.005
    J = np.zeros((16, 3))
    tips = np.zeros((5, 3))
    radii, tip_dir = {}, {}
    for f in LONG_FINGERS:
        mcp = np.array(_MCP[f])
        mcp[0] *= plen
        mcp[1] = b_ref + (mcp[1] - b_ref) * pwid
        d = _dir(_FAN_DEG[f], 0.0)
        L = np.array(_SEG[f]) * flen * {"index": 1 + ir, "ring": 1 - ir, "little": llen}.get(f, 1.0)
        j1, j2, j3 = CHAIN[f]
        J[j1], J[j2], J[j3] = mcp, mcp + L[0] * d, mcp + (L[0] + L[1]) * d
        tips[TIP_ORDER.index(f)] = mcp + L.sum() * d
        radii[f] = np.array(_RAD[f]) * fthk
        tip_dir[f] = d
    cmc = np.array(_THUMB_CMC)
    cmc[0] *= plen
    cmc[1] = b_ref + (cmc[1] - b_ref) * pwid
    dm, dp = _dir(*_THUMB_DIR_DEG[0]), _dir(*_THUMB_DIR_DEG[1])
    Lt = np.array(_THUMB_LEN) * tlen * np.array([1.0, 1 + 0.04 * beta[1], 1 + 0.04 * beta[1]])
    J[13], J[14] = cmc, cmc + Lt[0] * dm
    J[15] = J[14] + Lt[1] * dp
    tips[0] = J[15] + Lt[2] * dp
    radii["thumb"] = np.array(_THUMB_RAD) * np.array([1 + 0.06 * beta[3], fthk, fthk, fthk])
    tip_dir["thumb"] = dp
    girth = np.array([1 + 0.08 * wg, 1 + 0.08 * wg, 1 + 0.04 * wg, 1.0, 1.0])
    palm = {
        "a": np.array(_PALM_A) * np.where(np.array(_PALM_A) > 0, plen, 1.0),
        "W": np.array(_PALM_W) * pwid * girth,
        "b": b_ref + (np.array(_PALM_B) - b_ref) * pwid,
        "H": np.array(_PALM_H) * pthk * girth,
        "c": np.array(_PALM_C),
        "knuckle_b": np.array([J[CHAIN[f][0], 1] for f in ("little", "ring", "middle", "index")]),
        "knuckle_a": np.array([J[CHAIN[f][0], 0] for f in ("little", "ring", "middle", "index")]),
    }
    # uniform scale about the wrist joint (the origin)
    J, tips = J * size, tips * size
    radii = {k: v * size for k, v in radii.items()}
    for k in ("a", "W", "b", "H", "c", "knuckle_b", "knuckle_a"):
        palm[k] = palm[k] * size
    return Design(J, tips, radii, tip_dir, palm, size)


# ---------------------------------------------------------------------------------------------------
# implicit surface


def _smin(a, b, k):
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.minimum(a, b) - h * h * k * 0.25


def _round_cone(p, A, B, rA, rB):
    """Distance-like value of points p (N, 3) to a tapered capsule from A (radius rA) to B (rB) -> (N,)."""
    ab = B - A
    ap = p - A
    t = np.clip((ap @ ab) / (ab @ ab), 0.0, 1.0)
    q = ap - t[:, None] * ab
    return np.sqrt((q * q).sum(1)) - (rA + t * (rB - rA))


def _palm_sdf(p, D: Design):
    pm = D.palm
    a, b, c = p[:, 0], p[:, 1], p[:, 2]
    W, bc = np.interp(a, pm["a"], pm["W"]), np.interp(a, pm["a"], pm["b"])
    H, cc = np.interp(a, pm["a"], pm["H"]), np.interp(a, pm["a"], pm["c"])
    R = 0.9 * np.minimum(W, H)
    qb, qc = np.abs(b - bc) - (W - R), np.abs(c - cc) - (H - R)
    d2 = np.hypot(np.maximum(qb, 0), np.maximum(qc, 0)) + np.minimum(np.maximum(qb, qc), 0) - R
    a1 = np.interp(b, pm["knuckle_b"], pm["knuckle_a"]) + _PALM_END * D.scale
    da = np.maximum(pm["a"][0] - a, a - a1)
    re = _ROUND_END * D.scale
    x, y = d2 + re, da + re
    return np.hypot(np.maximum(x, 0), np.maximum(y, 0)) + np.minimum(np.maximum(x, y), 0) - re


def _chain_points(D: Design, f: str):
    j1, j2, j3 = CHAIN[f]
    tc = D.tips[TIP_ORDER.index(f)] - D.radii[f][3] * D.tip_dir[f]
    return [D.joints[j1], D.joints[j2], D.joints[j3], tc]


def _segments(D: Design):
    """The capsules of the implicit surface: (A (S, 3), B (S, 3), rA (S,), rB (S,)), in the order:
    thenar (thumb metacarpal), 4 x 3 finger phalanges, 2 thumb phalanges."""
    segs = []
    P, r = _chain_points(D, "thumb"), D.radii["thumb"]
    segs.append((P[0], P[1], r[0], r[1]))
    for f in LONG_FINGERS:
        P, r = _chain_points(D, f), D.radii[f]
        segs += [(P[k], P[k + 1], r[k], r[k + 1]) for k in range(3)]
    P, r = _chain_points(D, "thumb"), D.radii["thumb"]
    segs += [(P[k], P[k + 1], r[k], r[k + 1]) for k in (1, 2)]
    return tuple(np.array(x) for x in zip(*segs))


def hand_sdf(p: np.ndarray, D: Design, fingers=None, palm: bool = True) -> np.ndarray:
    """(N, 3) design-frame points -> (N,) signed distance-like value (negative inside).

    fingers: the fingers whose capsules take part (None: all; the thumb brings its metacarpal, the
    thenar); palm: whether the palm block takes part."""
    s = D.scale
    fingers = PART_OF if fingers is None else set(fingers)
    cones = [_round_cone(p, *seg) for seg in zip(*_segments(D))]  # 15 x (N,)
    body = _palm_sdf(p, D) if palm else np.full(len(p), np.inf)
    if "thumb" in fingers:
        body = _smin(body, cones[0], _K_THENAR * s)
    long = [cones[1 + 3 * i + k] for i, f in enumerate(LONG_FINGERS) if f in fingers for k in range(3)]
    if long:
        body = _smin(body, np.min(long, axis=0), _K_FINGER * s)
    if "thumb" in fingers:
        body = _smin(body, np.minimum(cones[13], cones[14]), _K_THUMB * s)
    return body


def _sdf_grad(p, D, h=1e-6, **kw):
    offsets = np.concatenate([np.zeros((1, 3)), h * np.eye(3), -h * np.eye(3)])  # (7, 3)
    vals = hand_sdf((p[None] + offsets[:, None]).reshape(-1, 3), D, **kw).reshape(7, len(p))
    return vals[0], (vals[1:4] - vals[4:7]).T / (2 * h)


def _project(x, D, steps=3):
    for _ in range(steps):
        f, g = _sdf_grad(x, D)
        x = x - (f / np.maximum((g * g).sum(1), 1e-12))[:, None] * g
    return x


# ---------------------------------------------------------------------------------------------------
# mesh topology and initial positions


def _frame(d):
    """Right-handed (u, v) perpendicular to d with u towards +b, v towards +c (a tube's ring plane)."""
    up = np.array([0.0, 0.0, 1.0])
    u = _unit(np.cross(up, d)) if abs(d @ up) < 0.95 else _unit(np.cross(d, np.array([0.0, 1.0, 0.0])))
    # ensure (d, u, v) is right-handed like (a, b, c)
    v = np.cross(d, u)
    return u, v


def _ring(center, d, radius, K=_K, phase=0.0):
    u, v = _frame(d)
    th = 2 * np.pi * (np.arange(K) + 0.5) / K + phase
    return center + radius * (np.cos(th)[:, None] * u + np.sin(th)[:, None] * v)


def _polyline_samples(points, steps):
    out = [points[0]]
    for k, n in enumerate(steps):
        for i in range(1, n + 1):
            out.append(points[k] + (points[k + 1] - points[k]) * i / n)
    return np.array(out)


class _Builder:
    def __init__(self):
        self.verts: list[np.ndarray] = []
        self.faces: list[tuple[int, int, int]] = []
        self.part: list[int] = []

    def add(self, pts, part):
        start = sum(len(v) for v in self.verts)
        self.verts.append(np.asarray(pts, np.float64).reshape(-1, 3))
        self.part.extend([part] * len(self.verts[-1]))
        return np.arange(start, start + len(self.verts[-1]))

    def band(self, r0, r1):
        """Faces between two rings of equal length, both ordered counter-clockwise around the tube
        direction (r0 -> r1)."""
        K = len(r0)
        for m in range(K):
            n = (m + 1) % K
            self.faces.append((r0[m], r0[n], r1[n]))
            self.faces.append((r0[m], r1[n], r1[m]))

    def fan_end(self, ring, pole):
        K = len(ring)
        for m in range(K):
            self.faces.append((ring[m], ring[(m + 1) % K], pole))

    def fan_start(self, pole, ring):
        K = len(ring)
        for m in range(K):
            self.faces.append((pole, ring[(m + 1) % K], ring[m]))


PART_PALM, PART_THUMB = 0, 5
PART_OF = {"index": 1, "middle": 2, "ring": 3, "little": 4, "thumb": 5}


def _finger_tube(B: _Builder, prev, centres, radii, d_end, r_tip, part, phase=0.0):
    """Rings along ``centres`` (after ring 0 = ``prev``), a rounded cap and the tip pole
    -> (pole id, list of the rings' vertex ids along the centres)."""
    K = len(prev)
    rings = [np.asarray(prev)]
    for i in range(1, len(centres)):
        d = _unit(centres[min(i + 1, len(centres) - 1)] - centres[i - 1])
        ring = B.add(_ring(centres[i], d, radii[i], K=K, phase=phase), part)
        B.band(prev, ring)
        prev = ring
        rings.append(ring)
    for lat in _CAP_DEG:
        la = np.deg2rad(lat)
        ring = B.add(_ring(centres[-1] + d_end * r_tip * np.sin(la), d_end, r_tip * np.cos(la), K=K, phase=phase), part)
        B.band(prev, ring)
        prev = ring
    tip = B.add(centres[-1][None] + d_end * r_tip, part)[0]
    B.fan_end(prev, tip)
    return tip, rings


def _build_initial(D: Design):
    """Topology + rough vertex positions (design frame). Returns verts, faces, part labels, tip ids.

    The palm is a tube from the wrist to a distal loop made of the five finger base rings (dorsal
    halves from the thumb to the little finger, then the palmar halves back), the web strips between
    neighbouring fingers and a few extra vertices on the little finger's side.
    """
    B = _Builder()
    s = D.scale
    half = _K // 2
    fingers = ("thumb",) + LONG_FINGERS  # radial -> ulnar
    base, centres, radii = {}, {}, {}
    for f in fingers:
        P, r = _chain_points(D, f), D.radii[f]
        if f == "thumb":
            P = [P[0] + _THUMB_BASE * (P[1] - P[0])] + P[1:]
        steps = _THUMB_STEPS if f == "thumb" else _FINGER_STEPS[f]
        centres[f] = _polyline_samples(P, steps)
        radii[f] = _polyline_samples([np.array([x]) for x in r], steps)[:, 0]
        base[f] = _ring(centres[f][0], _unit(P[1] - P[0]), radii[f][0])
    # ulnar side vertices (little finger's side of the knuckle row)
    P = _chain_points(D, "little")
    u, v = _frame(_unit(P[1] - P[0]))
    th = np.deg2rad(180.0 + (360.0 / _K) * ((np.arange(_SIDE) + 1) / (_SIDE + 1) - 0.5))
    ulnar = P[0] + 1.25 * D.radii["little"][0] * (np.cos(th)[:, None] * u + np.sin(th)[:, None] * v)
    # web strips: rungs between the radial finger's ulnar side and the ulnar finger's radial side
    webs = {}
    for f, g in zip(fingers[:-1], fingers[1:]):
        n = _WEB_RUNGS if f == "thumb" else 0
        t = (np.arange(n) + 1)[:, None] / (n + 1)
        webs[f] = ((1 - t) * base[f][half - 1] + t * base[g][0], (1 - t) * base[f][half] + t * base[g][_K - 1])
    # the distal loop, counter-clockwise around +a
    src = []
    for f, g in zip(fingers, fingers[1:] + (None,)):
        src += [(f, k) for k in range(half)]
        if g is not None:
            src += [(f + "_wd", i) for i in range(len(webs[f][0]))]
    src += [("ulnar", i) for i in range(_SIDE)]
    for f, g in zip(fingers[::-1], fingers[::-1][1:] + (None,)):
        src += [(f, k) for k in range(half, _K)]
        if g is not None:
            src += [(g + "_wp", i) for i in range(len(webs[g][1]))[::-1]]
    pts = {"ulnar": ulnar}
    pts.update({f + "_wd": webs[f][0] for f in webs})
    pts.update({f + "_wp": webs[f][1] for f in webs})
    pts.update(base)
    distal = np.array([pts[f][k] for f, k in src])
    M = len(src)
    # wrist ellipse with the distal loop's arc-length distribution (the thumb's radial side -> +b)
    pm = D.palm
    a0 = pm["a"][0]
    W0, H0 = pm["W"][0] * 0.92, pm["H"][0] * 0.92
    wrist = _ellipse_like(distal, -0.5, W0, H0)
    wrist = np.concatenate([np.full((M, 1), a0), wrist + np.array([pm["b"][0], pm["c"][0]])], 1)
    rows = []
    for j in range(_PALM_ROWS):
        t = j / (_PALM_ROWS - 1)
        rows.append(B.add((1 - t) * wrist + t * distal, PART_PALM))
    grid = np.stack(rows)  # (rows, M)
    # wrist cap
    centre0 = np.array([a0, pm["b"][0], pm["c"][0]])
    cap_rings = []
    for sc, da in ((0.66, 0.004), (0.33, 0.0065)):
        cap_rings.append(B.add(centre0 + np.array([-da * s, 0, 0]) + (wrist - centre0) * sc, PART_PALM))
    pole = B.add((centre0 + np.array([-0.0075 * s, 0, 0]))[None], PART_PALM)[0]
    B.fan_start(pole, cap_rings[1])
    B.band(cap_rings[1], cap_rings[0])
    B.band(cap_rings[0], grid[0])
    for j in range(_PALM_ROWS - 1):
        B.band(grid[j], grid[j + 1])
    ids = {key: grid[-1, i] for i, key in enumerate(src)}
    # fingers: ring 0 = the finger's vertices of the distal loop
    tip_ids, joint_rings = {}, {}
    for f in fingers:
        ring0 = np.array([ids[(f, k)] for k in range(_K)])
        tip_ids[f], rings = _finger_tube(B, ring0, centres[f], radii[f], D.tip_dir[f], D.radii[f][3], PART_OF[f])
        steps = _THUMB_STEPS if f == "thumb" else _FINGER_STEPS[f]
        for k, j in enumerate(CHAIN[f][1:]):  # the rings through the second and third joints (+ neighbours)
            i = int(np.sum(steps[: k + 1]))
            joint_rings[j] = np.concatenate(rings[i - 1 : i + 2])
    # web strips (ladders of quads) between neighbouring fingers
    for f, g in zip(fingers[:-1], fingers[1:]):
        n = len(webs[f][0])
        dors = [ids[(f, half - 1)]] + [ids[(f + "_wd", i)] for i in range(n)] + [ids[(g, 0)]]
        palm = [ids[(f, half)]] + [ids[(f + "_wp", i)] for i in range(n)] + [ids[(g, _K - 1)]]
        for i in range(n + 1):
            B.faces.append((dors[i], dors[i + 1], palm[i + 1]))
            B.faces.append((dors[i], palm[i + 1], palm[i]))
    # ulnar side patch: the arc of extra vertices closed by the little finger ring's side edge
    _lens(B, [ids[("little", half - 1)]] + [ids[("ulnar", i)] for i in range(_SIDE)] + [ids[("little", half)]])
    verts = np.concatenate(B.verts)
    faces = np.array(B.faces, dtype=np.int64)
    part = np.array(B.part)
    tips = np.array([tip_ids[f] for f in TIP_ORDER])
    return verts, faces, part, tips, joint_rings


def _ellipse_like(loop, zero_at, W, H):
    """Points on the ellipse (W, H) with the same arc-length fractions as the closed ``loop`` (M, 3);
    loop position ``zero_at`` (fractional index) goes to angle 0 (the +b side). -> (M, 2) (b, c)."""
    seg = np.linalg.norm(np.roll(loop, -1, 0) - loop, axis=1)
    frac = np.concatenate([[0.0], np.cumsum(seg)[:-1]]) / seg.sum()
    f0 = np.interp(zero_at, np.arange(len(loop) + 1), np.append(frac, 1.0))
    th = np.linspace(0, 2 * np.pi, 721)
    per = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(W * np.cos(th)), np.diff(H * np.sin(th))))])
    ang = np.interp(((frac - f0) % 1.0) * per[-1], per, th)
    return np.stack([W * np.cos(ang), H * np.sin(ang)], 1)


def _lens(B: _Builder, arc):
    """Close the polygon ``arc`` (its edges used forwards) whose closing edge arc[-1] -> arc[0] is
    already used backwards by a finger ring: fans from both ends of the closing edge."""
    n = len(arc) - 2  # extra vertices
    h = (n + 1) // 2
    for i in range(1, h):
        B.faces.append((arc[i], arc[i + 1], arc[0]))
    B.faces.append((arc[0], arc[h], arc[-1]))
    for i in range(h, n):
        B.faces.append((arc[i], arc[i + 1], arc[-1]))


def _neighbours(faces, n):
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    e = np.concatenate([e, e[:, ::-1]])
    A = scipy.sparse.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n)).tocsr()
    A.data[:] = 1.0
    deg = np.asarray(A.sum(1)).ravel()
    return scipy.sparse.diags(1.0 / deg) @ A


def build_mesh(beta=None):
    """(verts (V, 3) design frame, faces (F, 3), part (V,), tip_ids (5,), Design, joint rings) for shape
    ``beta``; joint rings: MANO joint -> ids of the vertex rings around it (second and third joints)."""
    D = design(beta)
    verts, faces, part, tips, rings = _build_initial(D)
    L = _neighbours(faces, len(verts))
    x = _project(verts, D, steps=4)
    for _ in range(_RELAX_ITERS):
        lap = L @ x - x
        _, g = _sdf_grad(x, D)
        n = _unit(g)
        lap -= (lap * n).sum(1, keepdims=True) * n
        x = _project(x + 0.5 * lap, D, steps=2)
    x = _project(x, D, steps=4)
    return x, faces, part, tips, D, rings


# ---------------------------------------------------------------------------------------------------
# rig


def _smoothstep(x, lo, hi):
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _chain_coordinate(x, pts):
    """Arc-length coordinate of the closest point on the polyline ``pts`` (extended before its start)."""
    best_d = np.full(len(x), np.inf)
    best_s = np.zeros(len(x))
    s0 = 0.0
    for k in range(len(pts) - 1):
        A, Bp = pts[k], pts[k + 1]
        L = np.linalg.norm(Bp - A)
        t = ((x - A) @ (Bp - A)) / (L * L)
        t = np.clip(t, -np.inf if k == 0 else 0.0, 1.0)
        dist = np.linalg.norm(x - (A + t[:, None] * (Bp - A)), axis=1)
        better = dist < best_d
        best_d[better], best_s[better] = dist[better], s0 + t[better] * L
        s0 += L
    return best_s, best_d


def skinning_weights(x, faces, part, D: Design, smooth_iters=4):
    """(V, 16) linear blend skinning weights (rows sum to 1)."""
    V = len(x)
    w = np.zeros((V, 16))
    w[:, 0] = 1.0
    s = D.scale
    for f in LONG_FINGERS + ("thumb",):
        j1, j2, j3 = CHAIN[f]
        P = _chain_points(D, f)
        sc, dist = _chain_coordinate(x, P)
        s2 = np.linalg.norm(P[1] - P[0])
        s3 = s2 + np.linalg.norm(P[2] - P[1])
        if f == "thumb":
            base = _smoothstep(sc, -0.004 * s, 0.012 * s)
            reach = 1.0 - _smoothstep(dist, 1.0 * D.radii[f][0], D.radii[f][0] + 0.012 * s)
        else:
            base = _smoothstep(sc, -0.010 * s, 0.004 * s)
            reach = 1.0 - _smoothstep(dist, 1.3 * D.radii[f][0], 1.3 * D.radii[f][0] + 0.008 * s)
        mine = part == PART_OF[f]
        infl = np.where(mine, 1.0, np.where(part == PART_PALM, reach, 0.0))
        d = 0.004 * s
        k1 = base * (1 - _smoothstep(sc, s2 - d, s2 + d))
        k2 = _smoothstep(sc, s2 - d, s2 + d) * (1 - _smoothstep(sc, s3 - d, s3 + d))
        k3 = _smoothstep(sc, s3 - d, s3 + d)
        take = infl * base
        w[:, 0] -= np.minimum(take, w[:, 0])
        w[:, j1] += infl * k1
        w[:, j2] += infl * k2
        w[:, j3] += infl * k3
    w = np.maximum(w, 0)
    w /= w.sum(1, keepdims=True)
    Lop = _neighbours(faces, V)
    for _ in range(smooth_iters):
        w = 0.5 * w + 0.5 * (Lop @ w)
    w[w < 1e-4] = 0.0
    return w / w.sum(1, keepdims=True)


def _fit_regressor_row(x, idx, target, rho=300.0, lam=1.0):
    """Non-negative weights on vertices ``idx`` summing to 1 whose average is ``target`` (mm units)."""
    P = (x[idx] - target) * 1000.0  # (n, 3) mm
    n = len(idx)
    A = np.vstack([rho * P.T, rho * np.ones((1, n)), np.sqrt(lam) * np.eye(n)])
    b = np.concatenate([np.zeros(3), [rho], np.sqrt(lam) * np.full(n, 1.0 / n)])
    w, _ = scipy.optimize.nnls(A, b)
    return w / w.sum()


def joint_regressor(x, part, D: Design, rings: dict):
    """(16, V) joint regressor: each joint = a non-negative average of the vertices around it."""
    V = len(x)
    R = np.zeros((16, V))
    s = D.scale
    # wrist: the palm ring through the wrist joint
    idx = np.where((part == PART_PALM) & (np.abs(x[:, 0] - D.joints[0, 0]) < 0.0045 * s))[0]
    R[0, idx] = _fit_regressor_row(x, idx, D.joints[0])
    for f in LONG_FINGERS + ("thumb",):
        P = _chain_points(D, f)
        sc, dist = _chain_coordinate(x, P)
        s_j = [0.0, np.linalg.norm(P[1] - P[0])]
        s_j.append(s_j[1] + np.linalg.norm(P[2] - P[1]))
        for k, j in enumerate(CHAIN[f]):
            if k == 0:  # knuckle / thumb base: the vertices in a slab across the bone, around the joint
                width = 0.006 if f == "thumb" else 0.004
                radius = 2.6 * D.radii[f][0]
                sel = (np.abs(sc - s_j[k]) < width * s) & (dist < radius) & (
                    (part == PART_PALM) | (part == PART_OF[f]))
                idx = np.where(sel)[0]
            else:  # the three vertex rings around the joint
                idx = np.asarray(rings[j])
            if len(idx) < 6:
                raise RuntimeError(f"joint_regressor: too few vertices around joint {MANO_JOINT_NAMES[j]}")
            R[j, idx] = _fit_regressor_row(x, idx, D.joints[j])
    return R


# ---------------------------------------------------------------------------------------------------
# pose correctives


def _rodrigues(w):
    """(..., 3) axis-angle -> (..., 3, 3)."""
    th = np.linalg.norm(w, axis=-1, keepdims=True)
    k = w / np.maximum(th, 1e-12)
    K = np.zeros(w.shape[:-1] + (3, 3))
    K[..., 0, 1], K[..., 0, 2], K[..., 1, 2] = -k[..., 2], k[..., 1], -k[..., 0]
    K[..., 1, 0], K[..., 2, 0], K[..., 2, 1] = k[..., 2], -k[..., 1], k[..., 0]
    s, c = np.sin(th)[..., None], np.cos(th)[..., None]
    return np.eye(3) + s * K + (1 - c) * K @ K


def rigid_transforms(pose, J):
    """MANO's kinematics. pose: (B, 15, 3) finger joint axis-angles, J: (16, 3) rest joints ->
    (A (B, 16, 3, 4) rest -> posed transform of each joint, R (B, 15, 3, 3) local rotations)."""
    B = len(pose)
    R = np.concatenate([np.broadcast_to(np.eye(3), (B, 1, 3, 3)), _rodrigues(pose)], 1)  # (B, 16, 3, 3)
    G = np.zeros((B, 16, 4, 4))
    for j in range(16):
        p = MANO_PARENTS[j]
        local = np.zeros((B, 4, 4))
        local[:, :3, :3], local[:, 3, 3] = R[:, j], 1.0
        local[:, :3, 3] = J[j] - (J[p] if p >= 0 else 0.0)
        G[:, j] = local if p < 0 else G[:, p] @ local
    A = G[..., :3, :].copy()
    A[..., 3] -= np.einsum("bjik,jk->bji", G[..., :3, :3], J)
    return A, R[:, 1:]


def _to_design_frame(p):
    p = np.asarray(p)
    return np.stack([_WRIST_X - p[..., 0], p[..., 2], p[..., 1]], -1)


def posed_design(D: Design, A_b: np.ndarray) -> Design:
    """The design moved by one pose's joint transforms ``A_b`` (16, 3, 4) (MANO frame): its implicit
    surface is the ideal posed hand (each capsule carried rigidly by its bone, the palm by the wrist)."""
    Jm = _to_mano_frame(D.joints)
    Jp = np.einsum("jik,jk->ji", A_b[:, :, :3], Jm) + A_b[:, :, 3]
    tips_m = _to_mano_frame(D.tips)
    tips, tip_dir = np.zeros_like(D.tips), {}
    for i, f in enumerate(TIP_ORDER):
        T = A_b[CHAIN[f][2]]
        tips[i] = _to_design_frame(T[:, :3] @ tips_m[i] + T[:, 3])
        d = T[:, :3] @ _vec_to_mano_frame(D.tip_dir[f])
        tip_dir[f] = np.array([-d[0], d[2], d[1]])
    return dataclasses.replace(D, joints=_to_design_frame(Jp), tips=tips, tip_dir=tip_dir)


def _influence_groups(weights):
    """Vertices grouped by (fingers whose joints move them, whether the wrist does) -> {key: ids}."""
    finger_of = {j: f for f, js in CHAIN.items() for j in js}
    groups: dict = {}
    for i, w in enumerate(weights):
        fingers = frozenset(finger_of[j] for j in np.nonzero(w > 0.01)[0] if j > 0)
        if fingers:
            groups.setdefault((fingers, bool(w[0] > 0.01)), []).append(i)
    return {k: np.array(v) for k, v in groups.items()}


def pose_targets(x, weights, D: Design, pose):
    """Skinned vertices and their ideal positions for poses (B, 15, 3) -> (v_lbs (B, V, 3),
    v_ideal (B, V, 3), skinning rotations (B, V, 3, 3), local rotations (B, 15, 3, 3)), MANO frame.

    The ideal position of a skinned vertex is its projection onto the posed implicit surface made of
    the palm (for vertices the wrist moves) and of the fingers that move it (never the other
    fingers, so contacts between fingers are left alone), at the vertex's rest level."""
    v = _to_mano_frame(x)
    J = _to_mano_frame(D.joints)
    A, R = rigid_transforms(pose, J)
    T = np.einsum("vj,bjik->bvik", weights, A)  # (B, V, 3, 4)
    v_lbs = np.einsum("bvik,vk->bvi", T[..., :3], v) + T[..., 3]
    v_ideal = v_lbs.copy()
    groups = _influence_groups(weights)
    levels = {k: hand_sdf(x[idx], D, fingers=k[0], palm=k[1]) for k, idx in groups.items()}
    for b in range(len(pose)):
        Dp = posed_design(D, A[b])
        for key, idx in groups.items():
            p = _to_design_frame(v_lbs[b, idx])
            for _ in range(3):
                f, g = _sdf_grad(p, Dp, fingers=key[0], palm=key[1])
                p = p - ((f - levels[key]) / np.maximum((g * g).sum(1), 1e-12))[:, None] * g
            v_ideal[b, idx] = _to_mano_frame(p)
    return v_lbs, v_ideal, T[..., :3], R


def pose_blendshapes(x, faces, weights, D: Design, n_poses=96, seed=20240602, ridge=0.1, smooth_iters=_POSEDIR_SMOOTH):
    """(V, 3, 135) posedirs: per vertex, a ridge regression of the rest-frame correction that takes
    the skinned vertex onto the ideal posed surface (:func:`pose_targets`) on the pose features
    (R_j - I) of the joints that move the vertex, over natural poses."""
    import torch

    from handrecon.models.anatomy import joint_frames, sample_natural_pose

    J = _to_mano_frame(D.joints)
    frames = joint_frames(torch.as_tensor(J), MANO_PARENTS, "right")
    pose = sample_natural_pose(n_poses, frames, torch.Generator().manual_seed(seed)).numpy()
    v_lbs, v_ideal, T, R = pose_targets(x, weights, D, pose)
    res = np.linalg.solve(T, (v_ideal - v_lbs)[..., None])[..., 0]  # rest frame (B, V, 3)
    feat = (R - np.eye(3)).reshape(n_poses, 135)
    posedirs = np.zeros((len(x), 3, 135))
    for i, w in enumerate(weights):
        joints = [j for j in np.nonzero(w > 0.01)[0] if j > 0]
        if not joints:
            continue
        cols = np.concatenate([np.arange(9 * (j - 1), 9 * j) for j in joints])
        X = feat[:, cols]
        posedirs[i][:, cols] = np.linalg.solve(X.T @ X + ridge * np.eye(len(cols)), X.T @ res[:, i]).T
    L = _neighbours(faces, len(x))  # smooth the corrective fields over the surface (no folds)
    flat = posedirs.reshape(len(x), -1)
    for _ in range(smooth_iters):
        flat = 0.5 * flat + 0.5 * (L @ flat)
    return flat.reshape(posedirs.shape)


# ---------------------------------------------------------------------------------------------------
# assembly


def _to_mano_frame(p):
    """design (a, b, c) -> MANO-like (x, y, z) = (WRIST_X - a, c, b) (a proper rotation)."""
    p = np.asarray(p)
    return np.stack([_WRIST_X - p[..., 0], p[..., 2], p[..., 1]], -1)


def _vec_to_mano_frame(v):
    v = np.asarray(v)
    return np.stack([-v[..., 0], v[..., 2], v[..., 1]], -1)


def _pose_space(J, n=20000, seed=20240601):
    """PCA pose space about a relaxed hand: (components (45, 45) orthonormal rows, hands_mean (45,),
    variances (45,), coefficients of the first 200 samples (200, 45))."""
    import torch

    from handrecon.models.anatomy import joint_frames, relaxed_pose, sample_natural_pose

    frames = joint_frames(torch.as_tensor(J, dtype=torch.float64), MANO_PARENTS, "right")
    g = torch.Generator().manual_seed(seed)
    X = sample_natural_pose(n, frames, g).reshape(n, 45).numpy()
    mean = relaxed_pose(frames).reshape(45).numpy()
    second = (X - mean).T @ (X - mean) / n  # second moment about the relaxed hand
    var, vec = np.linalg.eigh(second)
    order = np.argsort(var)[::-1]
    var, comps = var[order], vec[:, order].T  # rows = components
    sign = np.sign(comps[np.arange(45), np.abs(comps).argmax(1)])
    comps = comps * sign[:, None]
    coeffs = (X[:200] - mean) @ comps.T
    return comps, mean, var, coeffs


def shape_blendshapes() -> np.ndarray:
    """(V, 3, 10) shapedirs (MANO frame): central differences of the generator (one unit of each of
    :data:`SHAPE_COMPONENTS`), made orthogonal over the vertices by Gram-Schmidt in that order, each
    keeping its own magnitude. So component 0 is a pure change of size and each later one is its
    anatomical change with the parts explained by the earlier ones removed (e.g. ``finger_length`` is
    longer fingers at the same overall extent)."""
    raw = []
    for k in range(10):
        e = np.zeros(10)
        e[k] = 1.0
        raw.append(_vec_to_mano_frame((build_mesh(e)[0] - build_mesh(-e)[0]) / 2.0).ravel())
    out = []
    for r in raw:
        v = r.copy()
        for q in out:
            v -= (v @ q) / (q @ q) * q
        out.append(v * np.linalg.norm(r) / np.linalg.norm(v))
    return np.stack(out, -1).reshape(-1, 3, 10)


def generate() -> dict:
    """Build the open hand model (deterministic) -> dict in MANO's pickle layout (+ a few extra keys)."""
    x, faces, part, tips, D, rings = build_mesh()
    weights = skinning_weights(x, faces, part, D)
    R = joint_regressor(x, part, D, rings)
    shapedirs = shape_blendshapes()
    v = _to_mano_frame(x)
    J = R @ v
    D = dataclasses.replace(D, joints=_to_design_frame(J))  # the regressed joints (equal up to 1e-9)
    posedirs = pose_blendshapes(x, faces, weights, D)
    comps, mean, var, coeffs = _pose_space(J)
    kintree = np.array([[4294967295] + list(MANO_PARENTS[1:]), list(range(16))], dtype=np.int64)
    return {
        "v_template": v,
        "f": faces.astype(np.uint32),
        "J_regressor": scipy.sparse.csc_matrix(R),
        "J": J,
        "weights": weights,
        "kintree_table": kintree,
        "shapedirs": shapedirs,
        "posedirs": posedirs.astype(np.float16),  # float16 keeps the shipped file small
        "hands_components": comps,
        "hands_mean": mean,
        "hands_coeffs": coeffs,
        "hands_pca_variance": var,
        "bs_style": "lbs",
        "bs_type": "lrotmin",
        "tip_vertex_ids": np.asarray(tips, dtype=np.int64),
        "shape_component_names": [name for name, _ in SHAPE_COMPONENTS],
        "openhand_version": OPENHAND_VERSION,
    }


def save(path: str | Path, data: dict | None = None) -> Path:
    """Write the model pickle (protocol 2, the layout of MANO's files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = generate() if data is None else data
    with open(path, "wb") as fh:
        pickle.dump(data, fh, protocol=2)
    return path


# ---------------------------------------------------------------------------------------------------
# preview


def preview_poses():
    """The shipped right hand (axis-angle input, flat mean) and a few named natural poses:
    -> (HandModel, {name: (15, 3) absolute axis-angle, MANO order})."""
    import torch

    from handrecon.models import anatomy
    from handrecon.models.hand_model import HandModel

    model = HandModel(None, side="right", use_pca=False, flat_hand_mean=True)
    frames = model.joint_frames.double()

    def pose(finger_curl, fan, thumb1, thumb2_bend, thumb3_bend):
        deg = torch.zeros(15, 3, dtype=torch.float64)
        for f, (k, m, t) in enumerate(anatomy._FINGER_ROWS):
            c = finger_curl[f]
            deg[k, 2], deg[m, 2], deg[t, 2] = c * 80.0, c * 95.0, c * 95.0 * 2 / 3
            deg[k, 1] = fan * anatomy._FAN_DEG[f] * (1 - 0.6 * c)
        a, b, c = anatomy._THUMB_ROWS
        deg[a] = torch.tensor(thumb1, dtype=torch.float64)
        deg[b, 2], deg[c, 2] = thumb2_bend, thumb3_bend
        lim = torch.as_tensor(anatomy._SAMPLER_RAD)
        ang = torch.deg2rad(deg).clamp(lim[..., 0], lim[..., 1])
        return anatomy.clamp_to_limits(anatomy.angles_to_pose(ang, frames))

    # thumb base angles are [twist, splay, bend] in degrees
    return model, {
        "rest": torch.zeros(15, 3, dtype=torch.float64),
        "open": pose((-0.05, -0.05, -0.05, -0.05), 1.0, (0.0, 25.0, -20.0), -5.0, -10.0),
        "relaxed": anatomy.relaxed_pose(frames),
        "fist": pose((0.95, 0.95, 0.95, 0.95), -0.5, (40.0, -30.0, 15.0), 20.0, 60.0),
        "pointing": pose((0.0, 0.9, 0.9, 0.9), -0.3, (35.0, -28.0, 15.0), 15.0, 45.0),
        "pinch": pose((0.45, 0.55, 0.65, 0.75), 0.0, (27.0, -27.0, 17.0), 5.0, 0.0),
    }


def _draw(ax, verts, faces, elev, azim, color=(0.90, 0.70, 0.60)):
    """Flat-shaded mesh on a matplotlib 3D axis (key light near the camera, a little specular)."""
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    tri = verts[faces]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-12
    e, a = np.deg2rad(elev), np.deg2rad(azim)
    view = np.array([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)])
    side = np.cross(view, [0.0, 0.0, 1.0])
    side = side / (np.linalg.norm(side) + 1e-12)
    light = _unit(view + 0.5 * side + np.array([0.0, 0.0, 0.6]))
    diffuse = np.clip(n @ light, 0, 1)
    half = _unit(light + view)
    spec = np.clip(n @ half, 0, 1) ** 24
    shade = 0.30 + 0.70 * diffuse
    cols = np.clip(np.array(color)[None] * shade[:, None] + 0.12 * spec[:, None], 0, 1)
    coll = Poly3DCollection(tri, facecolors=cols, edgecolors=cols, linewidths=0.25)
    ax.add_collection3d(coll)
    c = 0.5 * (verts.max(0) + verts.min(0))
    r = 0.5 * (verts.max(0) - verts.min(0)).max() * 0.95
    ax.set_xlim(c[0] - r, c[0] + r)
    ax.set_ylim(c[1] - r, c[1] + r)
    ax.set_zlim(c[2] - r, c[2] + r)
    ax.set_box_aspect((1, 1, 1))
    ax.view_init(elev=elev, azim=azim)
    ax.set_axis_off()


def preview(path_png: str | Path, views=((15, -65), (20, 115))) -> Path:
    """Render the shipped model in a few natural poses (palm-side and back views) to ``path_png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    model, poses = preview_poses()
    names = list(poses)
    P = torch.stack([poses[k] for k in names]).reshape(len(names), 45).float()
    with torch.no_grad():
        out = model(P, torch.zeros(len(names), 10))
    verts = out.verts.numpy()
    verts = np.stack([verts[..., 2], verts[..., 1], -verts[..., 0]], -1)  # display: fingers up, thumb +x
    faces = model.faces.numpy()
    fig = plt.figure(figsize=(2.6 * len(names), 2.9 * len(views)), dpi=110)
    for i, name in enumerate(names):
        for r, (elev, azim) in enumerate(views):
            ax = fig.add_subplot(len(views), len(names), r * len(names) + i + 1, projection="3d")
            _draw(ax, verts[i], faces, elev, azim)
            if r == 0:
                ax.set_title(name, fontsize=12)
    fig.subplots_adjust(0, 0, 1, 0.95, 0.0, 0.0)
    path_png = Path(path_png)
    path_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path_png)
    plt.close(fig)
    return path_png


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Generate handrecon's open hand model (MANO pickle layout).")
    ap.add_argument("--out", default=None, help=f"output pickle (default when no option: {ASSET_PATH})")
    ap.add_argument("--preview", default=None, help="also render the shipped/new model to this PNG")
    args = ap.parse_args(argv)
    if args.out is None and args.preview is None:
        args.out = str(ASSET_PATH)
    if args.out:
        data = generate()
        save(args.out, data)
        print(f"wrote {args.out}: V={len(data['v_template'])}, F={len(data['f'])}")
    if args.preview:
        print(f"wrote {preview(args.preview)}")


if __name__ == "__main__":
    main()
