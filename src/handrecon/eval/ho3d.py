"""HO3D (v2 / v3) Codalab submission: writer and reader.

Facts of the HO3D submission format (from the HO3D scripts and README):

* The file is ``pred.json`` = ``[xyz_list, verts_list]``: one 21 x 3 joint list and one
  V x 3 vertex list (MANO: 778) per evaluation image, in the order of ``evaluation.txt``.
  It is uploaded zipped (``zip -j pred.zip pred.json``).
* Joints are in HO3D's order, the "MANO + tips" order: wrist, index 1-3, middle 1-3,
  little 1-3, ring 1-3, thumb 1-3, then the tips thumb, index, middle, ring, little
  (:data:`handrecon.joints.CANONICAL_TO_HO3D` converts from handrecon's canonical order).
* Coordinates are metric and in the OpenGL camera frame: x right, y up, hand in front of the
  camera at negative z. handrecon's camera frame is OpenCV (y down, z forward), so y and z
  are negated. HO3D's own pred script refuses a submission whose points all have z > 0,
  because that means they were left in OpenCV axes.
* The evaluation script reports unaligned, Procrustes-aligned and scale-translation-aligned
  joint errors, unaligned and aligned mesh errors, and F@5 / F@15 mm (see
  :mod:`handrecon.eval.metrics`, which implements the aligned variants).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from handrecon.eval.exporters import _check_submission, _dump_pair, _np
from handrecon.joints import CANONICAL_TO_HO3D, HO3D_TO_CANONICAL, NUM_JOINTS, reorder

#: OpenCV <-> OpenGL camera axes: flip y and z (its own inverse)
OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0])


def opencv_to_opengl(points):
    """Negate y and z of (..., 3) points (numpy or torch). The map is its own inverse."""
    if hasattr(points, "detach"):
        import torch

        return points * torch.as_tensor([1.0, -1.0, -1.0], dtype=points.dtype, device=points.device)
    return np.asarray(points) * np.array([1.0, -1.0, -1.0])


def to_ho3d(joints, verts) -> tuple[np.ndarray, np.ndarray]:
    """Canonical-order OpenCV joints (N, 21, 3) and verts (N, V, 3) -> HO3D order, OpenGL axes."""
    j = reorder(np.asarray(joints, dtype=np.float64), CANONICAL_TO_HO3D, axis=-2)
    return opencv_to_opengl(j), opencv_to_opengl(np.asarray(verts, dtype=np.float64))


def write_ho3d_pred(path: str | Path, joints, verts, *, decimals: int = 6) -> Path:
    """Write HO3D's ``pred.json`` from handrecon predictions.

    joints: (N, 21, 3) canonical order; verts: (N, V, 3); metres, handrecon's (OpenCV)
    camera frame with the hand in front of the camera (z > 0). Raises ValueError for a sample
    whose joints all have z < 0 (already OpenGL: it would be flipped twice).
    """
    path = Path(path)
    j, v = _check_submission(path, joints, verts, NUM_JOINTS)
    behind = np.nonzero((j[..., 2] < 0).all(-1))[0]
    if len(behind):
        raise ValueError(
            f"{path}: sample(s) {behind[:5].tolist()} have every joint at z < 0; write_ho3d_pred expects "
            "OpenCV camera coordinates (z forward) and converts to OpenGL itself"
        )
    j_gl, v_gl = to_ho3d(j, v)
    return _dump_pair(path, j_gl, v_gl, decimals)


def read_ho3d_pred(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an HO3D ``pred.json`` back into handrecon's convention: joints (N, 21, 3) canonical
    order and verts (N, V, 3), OpenCV camera frame, metres."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"HO3D prediction file not found: {path}")
    with open(path) as fi:
        data = json.load(fi)
    if not isinstance(data, list) or len(data) != 2:
        raise ValueError(f"{path}: expected [xyz_list, verts_list]")
    j, v = _check_submission(path, _np(data[0], f"{path}: xyz_list"), _np(data[1], f"{path}: verts_list"))
    return reorder(opencv_to_opengl(j), HO3D_TO_CANONICAL, axis=-2), opencv_to_opengl(v)
