"""HO3D (v2 / v3): the submission writer and reader, and the local scorer
``python -m handrecon.eval.ho3d PRED_JSON GT_DIR [--version v2|v3]``.

The scorer reads GT_DIR/evaluation_xyz.json (N x 21 x 3) and GT_DIR/evaluation_verts.json
(N x 778 x 3), the evaluation ground truth HO3D released in November 2024 (OpenGL axes, HO3D
joint order, metres, in the order of ``evaluation.txt``; v2: 11524 samples, v3: 20137), scores
PRED_JSON (same convention) with the official metrics (:mod:`handrecon.eval.metrics`), writes
``metrics.json`` (and PCK plots) beside PRED_JSON and prints a table. A submission in
FreiHAND's convention (OpenCV axes or FreiHAND joint order) is refused
(:mod:`handrecon.eval.scoring`).

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

import argparse
import json
import sys
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


# ---------------------------------------------------------------------------- the scorer

#: published evaluation sizes (HO3D's db_size)
EVAL_SIZES = {"v2": 11524, "v3": 20137}


def load_ho3d_ground_truth(gt_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """GT_DIR/evaluation_xyz.json and evaluation_verts.json, as stored (HO3D order, OpenGL axes):
    (joints (N, 21, 3), verts (N, V, 3)), metres."""
    from handrecon.eval.scoring import load_json, stack_points

    root = Path(gt_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"HO3D ground-truth folder not found: {root}")
    hint = (" (HO3D's evaluation ground truth, released in November 2024: the GT download linked from "
            "the README of github.com/shreyashampali/ho3d, for your --version)")
    xyz_path, verts_path = root / "evaluation_xyz.json", root / "evaluation_verts.json"
    joints = stack_points(load_json(xyz_path, "HO3D joint ground truth", hint), xyz_path, "joints", NUM_JOINTS)
    verts = stack_points(load_json(verts_path, "HO3D vertex ground truth", hint), verts_path, "vertices", None)
    if len(joints) != len(verts):
        raise ValueError(f"{xyz_path} has {len(joints)} samples but {verts_path} has {len(verts)}")
    if len(joints) == 0:
        raise ValueError(f"{xyz_path}: no samples")
    return joints, verts


def evaluate_ho3d(pred_path: str | Path, gt_dir: str | Path, version: str = "v2",
                  out_dir: str | Path | None = None, *, plots: bool = True) -> dict:
    """Score an HO3D submission; returns the metrics dict (METRIC_KEYS plus n_samples,
    benchmark, version, pred_file; None where not computable) and writes metrics.json (and PCK
    plots) to out_dir (default: beside PRED_JSON). Raises :class:`~handrecon.eval.scoring.ConventionError`
    for a submission in FreiHAND's convention."""
    from handrecon.eval.scoring import check_convention, load_prediction, score

    if version not in EVAL_SIZES:
        raise ValueError(f"version must be one of {sorted(EVAL_SIZES)}, got {version!r}")
    pred_path = Path(pred_path)
    pred_joints, pred_verts = load_prediction(pred_path)
    gt_joints, gt_verts = load_ho3d_ground_truth(gt_dir)
    if len(gt_joints) != EVAL_SIZES[version]:
        other = [v for v, n in EVAL_SIZES.items() if n == len(gt_joints)]
        if other:
            raise ValueError(f"{gt_dir}: {len(gt_joints)} samples is HO3D {other[0]}'s evaluation set, "
                             f"but --version {version} was given")
    if len(pred_joints) != len(gt_joints):
        raise ValueError(f"{pred_path}: {len(pred_joints)} predictions but the ground truth in {gt_dir} has "
                         f"{len(gt_joints)} samples (evaluation.txt order, HO3D {version}: {EVAL_SIZES[version]})")
    check_convention(pred_joints, pred_verts, gt_joints, "ho3d", pred_path)
    # to handrecon's canonical order (distances, alignments and F-scores do not depend on the axes)
    pj, gj = reorder(pred_joints, HO3D_TO_CANONICAL, axis=-2), reorder(gt_joints, HO3D_TO_CANONICAL, axis=-2)
    meta = {"benchmark": "ho3d", "version": version, "pred_file": str(pred_path)}
    out = Path(out_dir) if out_dir is not None else pred_path.parent
    return score(pj, pred_verts, gj, gt_verts, out=out, meta=meta, plots=plots, title=f"HO3D {version} evaluation")


def main(argv: list[str] | None = None) -> int:
    from handrecon.eval.scoring import format_table, notes

    parser = argparse.ArgumentParser(
        prog="python -m handrecon.eval.ho3d",
        description="Score an HO3D pred.json ([xyz_list, verts_list], OpenGL axes, HO3D joint order, metres) "
                    "against the released evaluation ground truth.",
    )
    parser.add_argument("pred_json", help="prediction file [xyz_list, verts_list]")
    parser.add_argument("gt_dir", help="folder with evaluation_xyz.json and evaluation_verts.json")
    parser.add_argument("--version", default="v2", choices=sorted(EVAL_SIZES))
    parser.add_argument("--out-dir", default=None, help="where to write metrics.json and plots (default: beside PRED_JSON)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PCK plots")
    args = parser.parse_args(argv)
    try:
        metrics = evaluate_ho3d(args.pred_json, args.gt_dir, args.version, args.out_dir, plots=not args.no_plots)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(metrics))
    for note in notes(metrics, EVAL_SIZES[args.version], f"HO3D {args.version} evaluation"):
        print(f"note: {note}")
    out = Path(args.out_dir) if args.out_dir else Path(args.pred_json).parent
    print(f"metrics written to {out / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
