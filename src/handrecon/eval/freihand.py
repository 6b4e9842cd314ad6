"""FreiHAND evaluation: ``python -m handrecon.eval.freihand PRED_JSON GT_ROOT [--split evaluation]``.

Layout (as distributed by FreiHAND)::

    GT_ROOT/<split>_xyz.json     list of N joint sets, each 21 x 3 (metres, FreiHAND order, OpenCV axes)
    GT_ROOT/<split>_verts.json   list of N vertex sets, each V x 3 (MANO: V = 778)
    PRED_JSON                    [xyz_list, verts_list], the Codalab submission format
                                 (handrecon.eval.exporters.write_freihand_pred writes it)

The evaluation split's ground truth (``evaluation_xyz.json``, ``evaluation_verts.json``) is not
in the training download: it is the separate FreiHAND_pub_v2_eval download, unpacked into the
same folder. ``split`` is ``evaluation`` (3960 samples) or ``training``. Writes
``metrics.json`` (the keys of :data:`handrecon.eval.metrics.METRIC_KEYS`, null where not
computable), ``pck_joints.png`` and (when vertex errors exist) ``pck_verts.png`` into
``out_dir`` (default: the folder of PRED_JSON), and prints a table. A submission in HO3D's
convention (OpenGL axes, HO3D joint order) is refused (:mod:`handrecon.eval.scoring`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from handrecon.eval.scoring import (
    ConventionError,
    check_convention,
    format_table,
    load_json,
    load_prediction,
    notes,
    score,
    stack_points,
)
from handrecon.joints import NUM_JOINTS

SPLITS = ("evaluation", "training")
#: published sample counts
SIZES = {"evaluation": 3960, "training": 32560}
GT_HINT = (
    " (FreiHAND's evaluation annotations are a separate download, FreiHAND_pub_v2_eval: unpack its "
    "evaluation_xyz.json and evaluation_verts.json into this folder)"
)

__all__ = ["evaluate_freihand", "load_ground_truth", "load_prediction", "format_table", "main", "ConventionError"]


def load_ground_truth(gt_root: str | Path, split: str = "evaluation") -> tuple[np.ndarray, np.ndarray]:
    """Read ``<gt_root>/<split>_xyz.json`` and ``<split>_verts.json`` -> (joints (N, 21, 3),
    verts (N, V, 3)), metres."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    root = Path(gt_root)
    if not root.is_dir():
        raise FileNotFoundError(f"FreiHAND ground-truth folder not found: {root}")
    xyz_path, verts_path = root / f"{split}_xyz.json", root / f"{split}_verts.json"
    hint = GT_HINT if split == "evaluation" else ""
    joints = stack_points(load_json(xyz_path, "FreiHAND joint ground truth", hint), xyz_path, "joints", NUM_JOINTS)
    verts = stack_points(load_json(verts_path, "FreiHAND vertex ground truth", hint), verts_path, "vertices", None)
    if len(joints) != len(verts):
        raise ValueError(f"{xyz_path} has {len(joints)} samples but {verts_path} has {len(verts)}")
    if len(joints) == 0:
        raise ValueError(f"{xyz_path}: no samples")
    return joints, verts


def evaluate_freihand(
    pred_path: str | Path,
    gt_root: str | Path,
    split: str = "evaluation",
    out_dir: str | Path | None = None,
    *,
    plots: bool = True,
) -> dict:
    """Evaluate a FreiHAND submission against the ground truth; returns the metrics dict
    (keys of :data:`handrecon.eval.metrics.METRIC_KEYS` plus n_samples, benchmark, split,
    pred_file; None where not computable) and writes metrics.json and PCK plots to out_dir.
    Raises :class:`ConventionError` for a submission in HO3D's convention."""
    pred_path = Path(pred_path)
    pred_joints, pred_verts = load_prediction(pred_path)
    gt_joints, gt_verts = load_ground_truth(gt_root, split)
    if len(pred_joints) != len(gt_joints):
        raise ValueError(
            f"{pred_path}: {len(pred_joints)} predictions but the {split} ground truth in {gt_root} "
            f"has {len(gt_joints)} samples"
        )
    check_convention(pred_joints, pred_verts, gt_joints, "freihand", pred_path)
    meta = {"benchmark": "freihand", "split": split, "pred_file": str(pred_path)}
    out = Path(out_dir) if out_dir is not None else pred_path.parent
    return score(pred_joints, pred_verts, gt_joints, gt_verts, out=out, meta=meta, plots=plots,
                 title=f"FreiHAND {split}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m handrecon.eval.freihand",
        description="Evaluate a FreiHAND pred.json ([xyz_list, verts_list]) against ground truth.",
    )
    parser.add_argument("pred_json", help="prediction file [xyz_list, verts_list]")
    parser.add_argument("gt_root", help="folder with <split>_xyz.json and <split>_verts.json")
    parser.add_argument("--split", default="evaluation", choices=SPLITS)
    parser.add_argument(
        "--out-dir", default=None, help="where to write metrics.json and plots (default: beside PRED_JSON)"
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the PCK plots")
    args = parser.parse_args(argv)
    try:
        metrics = evaluate_freihand(
            args.pred_json, args.gt_root, args.split, args.out_dir, plots=not args.no_plots
        )
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(metrics))
    for note in notes(metrics, SIZES[args.split], f"FreiHAND {args.split}"):
        print(f"note: {note}")
    out = Path(args.out_dir) if args.out_dir else Path(args.pred_json).parent
    print(f"metrics written to {out / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
