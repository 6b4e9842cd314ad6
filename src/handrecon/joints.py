"""The one home of joint orders.

handrecon's canonical order is FreiHAND/OpenPose's 21 keypoints: 0 wrist; then per finger
(thumb, index, middle, ring, little) four joints from base to tip. Everything in handrecon
(losses, data, metrics, exports) uses this order; other orders are converted on load and back
on export with the index arrays below.
"""

from __future__ import annotations

import numpy as np

FINGERS: tuple[str, ...] = ("thumb", "index", "middle", "ring", "little")

#: FreiHAND / OpenPose order, the canonical order of handrecon (21 names).
JOINT_NAMES: tuple[str, ...] = ("wrist",) + tuple(
    f"{finger}_{k}" for finger in FINGERS for k in ("mcp", "pip", "dip", "tip")
)
NUM_JOINTS = 21
WRIST = 0
#: index of the first joint (base) of each finger, and of each fingertip, in canonical order
FINGER_BASES: tuple[int, ...] = (1, 5, 9, 13, 17)
FINGERTIPS: tuple[int, ...] = (4, 8, 12, 16, 20)

#: parent of each canonical joint (-1 for the wrist): the kinematic tree as 20 bones
PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 0, 13, 14, 15, 0, 17, 18, 19)
#: the 20 bones as (parent, child) pairs in canonical order
BONES: tuple[tuple[int, int], ...] = tuple((p, c) for c, p in enumerate(PARENTS) if p >= 0)

#: MANO's 16 joints in its own (J_regressor / kintree) order
MANO_JOINT_NAMES: tuple[str, ...] = (
    "wrist",
    "index1", "index2", "index3",
    "middle1", "middle2", "middle3",
    "little1", "little2", "little3",
    "ring1", "ring2", "ring3",
    "thumb1", "thumb2", "thumb3",
)  # fmt: skip
#: MANO's kinematic tree: parent of each of the 16 MANO joints
MANO_PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)
#: fingertip order appended after MANO's 16 joints ("MANO + tips" order, also HO3D's order)
TIP_ORDER: tuple[str, ...] = ("thumb", "index", "middle", "ring", "little")

#: canonical[i] = mano_plus_tips[MANO_TO_CANONICAL[i]] (mano_plus_tips = 16 MANO joints, 5 tips)
MANO_TO_CANONICAL: np.ndarray = np.array(
    [0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20], dtype=np.int64
)
#: mano_plus_tips[j] = canonical[CANONICAL_TO_MANO[j]]
CANONICAL_TO_MANO: np.ndarray = np.argsort(MANO_TO_CANONICAL)

#: HO3D stores handJoints3D in "MANO + tips" order (wrist, index1-3, middle1-3, pinky1-3,
#: ring1-3, thumb1-3, then tips thumb, index, middle, ring, pinky).
HO3D_TO_CANONICAL: np.ndarray = MANO_TO_CANONICAL
CANONICAL_TO_HO3D: np.ndarray = CANONICAL_TO_MANO

#: canonical joint of each MANO joint (the 16 that are not tips)
MANO_JOINT_TO_CANONICAL: np.ndarray = CANONICAL_TO_MANO[:16]


#: the 21 rows of a "MANO interleaved" joint regressor (NIMBLE's ``jreg_mano``, and MANO's 16 joints
#: with each fingertip inserted after its finger, as the NIMBLE fork of the reference code builds
#: them): wrist, then index, middle, little, ring, thumb, each base to tip.
#: canonical[i] = interleaved[MANO_INTERLEAVED_TO_CANONICAL[i]]
MANO_INTERLEAVED_TO_CANONICAL: np.ndarray = np.array(
    [0, 17, 18, 19, 20, 1, 2, 3, 4, 5, 6, 7, 8, 13, 14, 15, 16, 9, 10, 11, 12], dtype=np.int64
)

#: NIMBLE's 25 bone-model joints (its kinematic tree): 0 the carpal (root); the thumb's metacarpal,
#: proximal, distal and distal end (1-4); then per finger (index, middle, ring, little) metacarpal,
#: proximal, intermediate, distal, distal end (5-9, 10-14, 15-19, 20-24).
NIMBLE_JOINT_NAMES: tuple[str, ...] = ("carpal", "met1", "pro1", "dis1", "dis1_end") + tuple(
    name for f in range(2, 6) for name in (f"met{f}", f"pro{f}", f"int{f}", f"dis{f}", f"dis{f}_end")
)
#: parent of each NIMBLE joint
NIMBLE_PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 3) + tuple(0 if k == 0 else 5 * f + k - 1 for f in range(1, 5) for k in range(5))
#: the NIMBLE bone (0..19: carpal, thumb met/pro/dis, then met/pro/int/dis per finger) whose rotation
#: acts at each of the 25 joints; -1: an end joint (no rotation)
NIMBLE_JOINT_BONE: tuple[int, ...] = (0, 1, 2, 3, -1) + tuple(-1 if k == 4 else 4 * f + k for f in range(1, 5) for k in range(5))
#: MANO's 16 joints (MANO order) as NIMBLE joints, and MANO's 15 finger joints as NIMBLE bones
NIMBLE_JOINT_OF_MANO_JOINT: np.ndarray = np.array([0, 6, 7, 8, 11, 12, 13, 21, 22, 23, 16, 17, 18, 1, 2, 3], dtype=np.int64)
NIMBLE_BONE_OF_MANO_JOINT: np.ndarray = np.array([5, 6, 7, 9, 10, 11, 17, 18, 19, 13, 14, 15, 1, 2, 3], dtype=np.int64)


def reorder(x, index: np.ndarray, axis: int = -2):
    """Reorder joints along ``axis`` (default: the joint axis of a (..., 21, D) array/tensor)."""
    if isinstance(index, np.ndarray) and not isinstance(x, np.ndarray):
        import torch

        return torch.index_select(x, axis if axis >= 0 else x.dim() + axis, torch.as_tensor(index, device=x.device))
    return np.take(x, index, axis=axis)


def _check() -> None:
    assert len(JOINT_NAMES) == NUM_JOINTS and len(PARENTS) == NUM_JOINTS
    mano_plus_tips = list(MANO_JOINT_NAMES) + [f"{t}_tip" for t in TIP_ORDER]
    names = {"1": "mcp", "2": "pip", "3": "dip"}
    mapped = []
    for j in MANO_TO_CANONICAL:
        n = mano_plus_tips[j]
        if n[-1] in names:
            n = f"{n[:-1]}_{names[n[-1]]}"
        mapped.append(n)
    assert tuple(mapped) == JOINT_NAMES, mapped
    inter = ["wrist"] + [f"{f}_{k}" for f in ("index", "middle", "little", "ring", "thumb") for k in ("mcp", "pip", "dip", "tip")]
    assert tuple(inter[i] for i in MANO_INTERLEAVED_TO_CANONICAL) == JOINT_NAMES
    assert len(NIMBLE_JOINT_NAMES) == len(NIMBLE_PARENTS) == len(NIMBLE_JOINT_BONE) == 25
    assert sorted(b for b in NIMBLE_JOINT_BONE if b >= 0) == list(range(20))


_check()
