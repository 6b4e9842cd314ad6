"""Hand anatomy: the pose prior's table, joint frames, twist / splay / bend angles, natural poses.

Pose prior (``tsa_poses``): the S2HAND reference bounds the RAW MANO axis-angle components
[x, y, z] of every finger joint (hands_mean included, right hand; MANO's axes: the fingers point
along -x, the thumb is on the +z side, the palm faces -y, so z is the flexion of the long fingers,
y their splay and x their twist) with its own [min, max] table (:data:`POSE_LIMITS_DEG`, transcribed
from examples/losses.py). :func:`pose_violation` gives, per component, the distance outside that box
(0 inside). The open hand model is built in the same axes (handrecon.models.openhand), so one table
serves both models; a left hand's pose is mirrored to the right hand's first (``x, -y, -z``).

Joint frames (analysis and sampling only, not the prior): every finger joint's local rotation
(axis-angle, MANO convention: expressed in the rest-pose axes, applied in the parent's frame) can be
decomposed in a per-joint orthonormal frame built once from the rest-pose joints
(:func:`joint_frames`). Its rows are

* ``twist``: the bone axis, pointing from the child joint back to the joint (proximal), so that a
  positive twist is a pronation (the rotation that turns the thumb pad towards the fingers);
* ``splay``: ``bend x twist``, the hand's dorsal direction made perpendicular to the bone; a positive
  splay moves the finger towards the thumb side (radial abduction for the thumb);
* ``bend``: ``distal x palmar normal``, perpendicular to the bone and to the palm normal; a positive
  bend is a flexion (the finger curls towards the palm).

The angles are the components of the rotation vector along these axes (:func:`local_angles`), so a
pure rotation about one axis comes back exactly. Left hands use the mirror image of the right hand's
frames, ``e_left = diag(1, -1, -1) e_right`` (the mirror of an axial vector through x -> -x), so the
same angles mean the same anatomical motion on both hands.

The natural pose sampler (:func:`sample_natural_pose`) shapes poses with these anatomical angles
(:data:`SAMPLER_RANGES_DEG`) and then keeps every raw component inside the prior's table, so every
sampled pose costs 0 under the prior.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from handrecon.joints import MANO_JOINT_NAMES, MANO_PARENTS

#: the 15 finger joints (MANO joints 1..15, MANO order)
FINGER_JOINT_NAMES: tuple[str, ...] = MANO_JOINT_NAMES[1:]
#: the three angles of a joint, in the order of the last axis of angles / frames
ANGLE_NAMES: tuple[str, ...] = ("twist", "splay", "bend")

_FINGER_XYZ = ((-5.0, 5.0), (-5.0, 5.0), (-10.0, 100.0))  # x, y, z (degrees)
_KNUCKLE_XYZ = ((-5.0, 5.0), (-10.0, 10.0), (-10.0, 100.0))

#: the reference's pose-prior box: (min, max) in degrees of the raw MANO axis-angle [x, y, z] of each
#: finger joint (hands_mean included, right hand), S2HAND examples/losses.py ``tsa_pose_loss``. The
#: reference also has a root row (x in [3.13, 3.15], y and z in [-0.01, 0.01] rad), which its fixed
#: root rotation [pi, 0, 0] always satisfies: it only divides the mean by 16 x 3 instead of 15 x 3
#: (:data:`POSE_PRIOR_ROWS`).
POSE_LIMITS_DEG: dict[str, tuple[tuple[float, float], ...]] = {
    "index1": _KNUCKLE_XYZ, "index2": _FINGER_XYZ, "index3": _FINGER_XYZ,
    "middle1": _KNUCKLE_XYZ, "middle2": _FINGER_XYZ, "middle3": _FINGER_XYZ,
    "little1": ((-20.0, 5.0), (-10.0, 20.0), (-10.0, 100.0)), "little2": _FINGER_XYZ, "little3": _FINGER_XYZ,
    "ring1": _KNUCKLE_XYZ, "ring2": _FINGER_XYZ, "ring3": _FINGER_XYZ,
    "thumb1": ((0.0, 90.0), (-22.5, 33.75), (-22.5, 22.5)),
    "thumb2": ((-5.0, 5.0), (-5.0, 5.0), (-22.5, 22.5)),
    "thumb3": ((-5.0, 5.0), (-5.0, 5.0), (-20.0, 100.0)),
}  # fmt: skip
#: rows the reference's prior averages over: its root row (always 0) + the 15 finger joints
POSE_PRIOR_ROWS = 16

_LIMITS_RAD = np.deg2rad(np.array([POSE_LIMITS_DEG[name] for name in FINGER_JOINT_NAMES], dtype=np.float64))
_LIMITS_CACHE: dict = {}
_AA_MIRROR = (1.0, -1.0, -1.0)  # left <-> right hand axis-angle (mirror through x -> -x)


def pose_limits(dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """(15, 3, 2) [min, max] in radians of the raw [x, y, z] axis-angle components, MANO finger joint
    order, right hand (do not modify)."""
    key = (dtype, str(torch.device(device) if device is not None else torch.device("cpu")))
    if key not in _LIMITS_CACHE:
        _LIMITS_CACHE[key] = torch.as_tensor(_LIMITS_RAD, dtype=dtype, device=device)
    return _LIMITS_CACHE[key]


def _as_right(local_pose: torch.Tensor, side: str) -> torch.Tensor:
    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left', got {side!r}")
    return local_pose if side == "right" else local_pose * local_pose.new_tensor(_AA_MIRROR)


def pose_violation(local_pose: torch.Tensor, side: str = "right") -> torch.Tensor:
    """(B, 15, 3) raw finger axis-angle (hands_mean included) -> (B, 15, 3): per component 0 inside
    the reference's box (:data:`POSE_LIMITS_DEG`), the distance to it outside (radians)."""
    if local_pose.shape[-2:] != (15, 3):
        raise ValueError(f"pose_violation: expected (B, 15, 3) finger axis-angles, got {tuple(local_pose.shape)}")
    lim = pose_limits(local_pose.dtype, local_pose.device)
    p = _as_right(local_pose, side)
    return torch.relu(p - lim[..., 1]) + torch.relu(lim[..., 0] - p)


def clamp_to_limits(local_pose: torch.Tensor, margin: float = 0.0, side: str = "right") -> torch.Tensor:
    """(..., 15, 3) raw finger axis-angle with every component clipped into the reference's box,
    ``margin`` radians inside each bound."""
    lim = pose_limits(local_pose.dtype, local_pose.device)
    p = _as_right(local_pose, side).clamp(lim[..., 0] + margin, lim[..., 1] - margin)
    return _as_right(p, side)


#: ranges (degrees) of [twist, splay, bend] in the joint frames within which the natural pose
#: sampler shapes its poses (not the prior: that is :data:`POSE_LIMITS_DEG` on the raw components)
_SAMPLE_FINGER = ((-5.0, 5.0), (-5.0, 5.0), (-10.0, 100.0))
_SAMPLE_KNUCKLE = ((-5.0, 5.0), (-10.0, 10.0), (-10.0, 100.0))
SAMPLER_RANGES_DEG: dict[str, tuple[tuple[float, float], ...]] = {
    "index1": _SAMPLE_KNUCKLE, "index2": _SAMPLE_FINGER, "index3": _SAMPLE_FINGER,
    "middle1": _SAMPLE_KNUCKLE, "middle2": _SAMPLE_FINGER, "middle3": _SAMPLE_FINGER,
    "little1": ((-5.0, 5.0), (-20.0, 20.0), (-10.0, 100.0)), "little2": _SAMPLE_FINGER, "little3": _SAMPLE_FINGER,
    "ring1": _SAMPLE_KNUCKLE, "ring2": _SAMPLE_FINGER, "ring3": _SAMPLE_FINGER,
    "thumb1": ((0.0, 90.0), (-33.75, 33.75), (-22.5, 22.5)),
    "thumb2": ((-5.0, 5.0), (-5.0, 5.0), (-22.5, 22.5)),
    "thumb3": ((-5.0, 5.0), (-5.0, 5.0), (-20.0, 100.0)),
}  # fmt: skip
_SAMPLER_RAD = np.deg2rad(np.array([SAMPLER_RANGES_DEG[name] for name in FINGER_JOINT_NAMES], dtype=np.float64))


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    if np.any(n < 1e-12):
        raise ValueError("joint_frames: two joints coincide (zero-length bone or degenerate palm)")
    return v / n


def _right_frames(J: np.ndarray, parents: Sequence[int]) -> np.ndarray:
    wrist = MANO_JOINT_NAMES.index("wrist")
    index1, little1 = MANO_JOINT_NAMES.index("index1"), MANO_JOINT_NAMES.index("little1")
    palmar = _unit(np.cross(J[index1] - J[wrist], J[little1] - J[wrist]))  # right hand: palm side
    frames = np.zeros((len(J) - 1, 3, 3))
    for j in range(1, len(J)):
        children = [c for c, p in enumerate(parents) if p == j]
        if children:
            distal = _unit(np.mean([J[c] for c in children], axis=0) - J[j])
        else:
            distal = _unit(J[j] - J[parents[j]])
        bend = _unit(np.cross(distal, palmar))
        twist = -distal
        splay = np.cross(bend, twist)
        frames[j - 1] = np.stack([twist, splay, bend])
    return frames


def joint_frames(template_joints, parents: Sequence[int] = MANO_PARENTS, side: str = "right") -> torch.Tensor:
    """Per finger joint [twist, splay, bend] unit axes from the rest-pose joints.

    template_joints: (16, 3) rest-pose joints in MANO order (numpy or torch); parents: MANO's tree;
    side: 'right' or 'left' (the left hand's frames are the mirror image of the right hand's).
    Returns (15, 3, 3) rotation matrices whose rows are the axes (torch; the input's dtype/device if
    it is a tensor, else float32).
    """
    if side not in ("right", "left"):
        raise ValueError(f"joint_frames: side must be 'right' or 'left', got {side!r}")
    is_tensor = torch.is_tensor(template_joints)
    J = (template_joints.detach().cpu().double().numpy() if is_tensor else np.asarray(template_joints, np.float64))
    if J.shape != (len(parents), 3) or len(parents) != 16:
        raise ValueError(f"joint_frames: expected (16, 3) joints and 16 parents, got {J.shape}, {len(parents)}")
    mirror = np.array([-1.0, 1.0, 1.0])
    frames = _right_frames(J if side == "right" else J * mirror, parents)
    if side == "left":
        frames = frames * np.array([1.0, -1.0, -1.0])
    if is_tensor:
        return torch.as_tensor(frames, dtype=template_joints.dtype, device=template_joints.device)
    return torch.as_tensor(frames, dtype=torch.float32)


def local_angles(local_pose: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """(B, 15, 3) axis-angle -> (B, 15, 3) [twist, splay, bend] radians (rotation vector in each frame)."""
    if local_pose.shape[-2:] != (15, 3) or frames.shape != (15, 3, 3):
        raise ValueError(f"local_angles: expected (B, 15, 3) pose and (15, 3, 3) frames, got "
                         f"{tuple(local_pose.shape)} and {tuple(frames.shape)}")
    return torch.einsum("jkc,...jc->...jk", frames.to(local_pose), local_pose)


def angles_to_pose(angles: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`local_angles`: (..., 15, 3) [twist, splay, bend] -> (..., 15, 3) axis-angle."""
    return torch.einsum("jkc,...jk->...jc", frames.to(angles), angles)


# --------------------------------------------------------------------------------------------------
# natural pose sampler

#: pose archetypes: name -> (probability, finger curl ranges [index, middle, ring, little],
#: thumb opposition range, thumb curl range, finger fan range); curl 0 = straight, 1 = fist
ARCHETYPES: dict[str, tuple] = {
    "relaxed": (0.25, ((0.10, 0.35), (0.15, 0.40), (0.20, 0.45), (0.25, 0.50)), (0.10, 0.40), (0.0, 0.3), (0.0, 0.6)),
    "open": (0.13, ((-0.08, 0.10),) * 4, (0.0, 0.15), (-0.15, 0.10), (0.4, 1.0)),
    "fist": (0.14, ((0.80, 1.0),) * 4, (0.35, 0.70), (0.4, 0.9), (-0.8, -0.2)),
    "point": (0.10, ((-0.05, 0.12), (0.75, 1.0), (0.75, 1.0), (0.75, 1.0)), (0.30, 0.70), (0.3, 0.8), (-0.6, 0.0)),
    "pinch": (0.10, ((0.35, 0.65), (0.20, 0.70), (0.20, 0.80), (0.20, 0.90)), (0.65, 1.0), (0.2, 0.6), (-0.4, 0.3)),
    "grasp": (0.10, ((0.40, 0.75),) * 4, (0.50, 0.90), (0.2, 0.6), (-0.4, 0.2)),
    "two": (0.05, ((-0.05, 0.10), (-0.05, 0.10), (0.75, 1.0), (0.75, 1.0)), (0.40, 0.80), (0.4, 0.9), (0.5, 1.0)),
    "random": (0.13, ((0.0, 1.0),) * 4, (0.0, 1.0), (-0.1, 1.0), (-0.8, 1.0)),
}  # fmt: skip

# MANO finger joint rows (0-based in the 15) of the four long fingers, [knuckle, middle, tip joint]
_FINGER_ROWS = ((0, 1, 2), (3, 4, 5), (9, 10, 11), (6, 7, 8))  # index, middle, ring, little
_THUMB_ROWS = (12, 13, 14)
#: knuckle splay (degrees) per unit of fan for index, middle, ring, little (positive = towards thumb)
_FAN_DEG = (8.0, 0.0, -6.0, -15.0)
_MARGIN = 1e-3  # radians kept inside every limit so sampled poses have exactly zero violation


def sample_natural_pose(n: int, frames: torch.Tensor, generator: torch.Generator | None = None,
                        spread: float = 1.0) -> torch.Tensor:
    """Draw ``n`` natural finger poses -> (n, 15, 3) axis-angle (MANO finger joints, absolute, i.e. not
    relative to a hand mean).

    Each sample picks an archetype (relaxed, open, fist, pointing, pinch, grasp, two fingers, random;
    :data:`ARCHETYPES`), a curl per finger with joint coupling (knuckle ~ 0.8, middle joint ~ 0.95 and
    tip joint ~ 2/3 of the middle joint's bend), a finger fan (knuckle splay), a thumb opposition
    (pronating twist, palmar bend and adduction at the thumb base; open hands take the thumb back and
    out instead) and a thumb curl, plus small noise
    scaled by ``spread``. The angles are clipped inside :data:`SAMPLER_RANGES_DEG`, and the raw
    components then inside the prior's box (:func:`clamp_to_limits`, 1e-3 rad inside), so
    ``pose_violation(pose)`` is zero. frames: (15, 3, 3) from
    :func:`joint_frames`; generator: a ``torch.Generator`` (CPU) for reproducible draws.
    """
    if frames.shape != (15, 3, 3):
        raise ValueError(f"sample_natural_pose: frames must be (15, 3, 3), got {tuple(frames.shape)}")
    f64 = torch.float64

    def uniform(lo, hi):  # lo, hi: (n, ...) tensors
        return lo + (hi - lo) * torch.rand(lo.shape, generator=generator, dtype=f64)

    def noise(std_deg: float, *shape: int) -> torch.Tensor:
        return torch.randn((n,) + shape, generator=generator, dtype=f64) * (std_deg * spread)

    names = list(ARCHETYPES)
    probs = torch.tensor([ARCHETYPES[k][0] for k in names], dtype=f64)
    kind = torch.multinomial(probs, n, replacement=True, generator=generator)  # (n,)
    table = lambda i: torch.tensor([ARCHETYPES[k][i] for k in names], dtype=f64)[kind]  # noqa: E731
    curl_rng, opp_rng, tcurl_rng, fan_rng = table(1), table(2), table(3), table(4)  # (n,4,2) (n,2) ...
    curl = uniform(curl_rng[..., 0], curl_rng[..., 1])  # (n, 4)
    opp = uniform(opp_rng[:, 0], opp_rng[:, 1])  # (n,)
    tcurl = uniform(tcurl_rng[:, 0], tcurl_rng[:, 1])
    fan = uniform(fan_rng[:, 0], fan_rng[:, 1])
    hook = uniform(torch.full((n, 4), 0.75, dtype=f64), torch.full((n, 4), 1.05, dtype=f64))

    deg = torch.zeros(n, 15, 3, dtype=f64)  # [twist, splay, bend] in degrees
    deg[..., 0] = noise(1.5, 15)
    deg[..., 1] = noise(1.5, 15)
    for f, (k, m, t) in enumerate(_FINGER_ROWS):
        c = curl[:, f]
        deg[:, k, 2] = c * 85.0 * hook[:, f] + noise(5.0)
        deg[:, m, 2] = c * 95.0 + noise(5.0)
        deg[:, t, 2] = deg[:, m, 2] * (2.0 / 3.0) + noise(4.0)
        deg[:, k, 1] = (fan * _FAN_DEG[f]) * (1.0 - 0.6 * c.clamp(0, 1)) + noise(2.0)
    a, b, c = _THUMB_ROWS
    spread_out = (1.0 - opp) * fan.clamp(min=0)  # open hands take the thumb back and out
    deg[:, a, 0] = 10.0 + opp * 35.0 + noise(6.0)
    deg[:, a, 1] = -opp * 28.0 + spread_out * 25.0 + noise(4.0)
    deg[:, a, 2] = opp * 18.0 - spread_out * 18.0 + noise(4.0)
    deg[:, b, 2] = tcurl * 20.0 + noise(3.0)
    deg[:, c, 2] = tcurl * 60.0 + noise(6.0)

    lim = torch.as_tensor(_SAMPLER_RAD)  # (15, 3, 2) radians
    ang = torch.deg2rad(deg).clamp(lim[..., 0] + _MARGIN, lim[..., 1] - _MARGIN)
    pose = angles_to_pose(ang, frames.detach().to(f64))
    return clamp_to_limits(pose, _MARGIN).to(frames.dtype)


def relaxed_angles(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(15, 3) [twist, splay, bend] radians of a relaxed, slightly curled hand (the open hand model's
    hands_mean): finger curls 0.22 (index) to 0.40 (little), thumb slightly opposed and flexed."""
    deg = torch.zeros(15, 3, dtype=torch.float64)
    for f, (k, m, t) in enumerate(_FINGER_ROWS):
        c = 0.22 + 0.06 * f
        deg[k, 2], deg[m, 2], deg[t, 2] = c * 80.0, c * 95.0, c * 95.0 * 2.0 / 3.0
        deg[k, 1] = 0.3 * _FAN_DEG[f] * (1.0 - 0.6 * c)
    a, b, c = _THUMB_ROWS
    deg[a] = torch.tensor([15.0, -5.0, 8.0], dtype=torch.float64)
    deg[b, 2], deg[c, 2] = 5.0, 15.0
    return torch.deg2rad(deg).to(dtype)


def relaxed_pose(frames: torch.Tensor) -> torch.Tensor:
    """(15, 3) raw axis-angle of :func:`relaxed_angles` in ``frames`` (15, 3, 3), with the raw components
    kept inside the prior's box like the sampler's (the open hand model's hands_mean)."""
    pose = angles_to_pose(relaxed_angles(), frames.detach().to(torch.float64))
    return clamp_to_limits(pose, _MARGIN).to(frames.dtype)


def _check() -> None:
    assert set(POSE_LIMITS_DEG) == set(FINGER_JOINT_NAMES) == set(SAMPLER_RANGES_DEG)
    assert abs(sum(v[0] for v in ARCHETYPES.values()) - 1.0) < 1e-9
    assert all(math.isfinite(x) and r[0] < r[1] for v in POSE_LIMITS_DEG.values() for r in v for x in r)


_check()
