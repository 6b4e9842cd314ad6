"""FreiHAND evaluation: ``python -m handrecon.eval.freihand PRED_JSON GT_ROOT [--split evaluation]``.

Layout (as distributed by FreiHAND)::

    GT_ROOT/<split>_xyz.json     list of N joint sets, each 21 x 3 (metres, FreiHAND order)
    GT_ROOT/<split>_verts.json   list of N vertex sets, each V x 3 (MANO: V = 778)
    PRED_JSON                    [xyz_list, verts_list], the Codalab submission format
                                 (handrecon.eval.exporters.write_freihand_pred writes it)

``split`` is ``evaluation`` (3960 samples) or ``training``. Writes ``metrics.json``,
``pck_joints.png`` and (when vertex errors exist) ``pck_verts.png`` into ``out_dir``
(default: the folder of PRED_JSON). See :mod:`handrecon.eval.metrics` for the protocol.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from handrecon.eval.metrics import METRIC_KEYS, evaluate_arrays
from handrecon.eval.plots import save_pck_plot
from handrecon.joints import NUM_JOINTS

SPLITS = ("evaluation", "training")


def _load_json(path: Path, what: str):
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        with open(path) as fi:
            return json.load(fi)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc


def _stack(entries, path: Path, what: str, n_points: int | None) -> np.ndarray:
    """List of (n_points, 3) entries -> (N, n_points, 3); n_points None: any count, equal for all."""
    if not isinstance(entries, list):
        raise ValueError(f"{path}: {what} must be a list of per-sample point lists")
    arrays = []
    expected = n_points
    for i, e in enumerate(entries):
        try:
            a = np.asarray(e, dtype=np.float64)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: {what} entry {i} is not a numeric (P, 3) array ({exc})") from exc
        if expected is None and a.ndim == 2:
            expected = a.shape[0]
        if a.ndim != 2 or a.shape != (expected, 3):
            raise ValueError(f"{path}: {what} entry {i} has shape {a.shape}, expected ({expected}, 3)")
        if not np.isfinite(a).all():
            raise ValueError(f"{path}: {what} entry {i} contains NaN or inf")
        arrays.append(a)
    if not arrays:
        return np.zeros((0, n_points or 0, 3))
    return np.stack(arrays)


def load_ground_truth(gt_root: str | Path, split: str = "evaluation") -> tuple[np.ndarray, np.ndarray]:
    """Read ``<gt_root>/<split>_xyz.json`` and ``<split>_verts.json`` -> (joints (N, 21, 3),
    verts (N, V, 3)), metres."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    root = Path(gt_root)
    if not root.is_dir():
        raise FileNotFoundError(f"FreiHAND ground-truth folder not found: {root}")
    xyz_path, verts_path = root / f"{split}_xyz.json", root / f"{split}_verts.json"
    joints = _stack(_load_json(xyz_path, "FreiHAND joint ground truth"), xyz_path, "joints", NUM_JOINTS)
    verts = _stack(_load_json(verts_path, "FreiHAND vertex ground truth"), verts_path, "vertices", None)
    if len(joints) != len(verts):
        raise ValueError(f"{xyz_path} has {len(joints)} samples but {verts_path} has {len(verts)}")
    if len(joints) == 0:
        raise ValueError(f"{xyz_path}: no samples")
    return joints, verts


def load_prediction(pred_path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a submission ``[xyz_list, verts_list]`` -> (joints (N, 21, 3), verts (N, V, 3) or
    None when verts_list is empty)."""
    path = Path(pred_path)
    pred = _load_json(path, "prediction file")
    if not isinstance(pred, list) or len(pred) != 2:
        raise ValueError(
            f"{path}: expected [xyz_list, verts_list] (a JSON list of two lists), "
            f"got {type(pred).__name__} of length {len(pred) if isinstance(pred, list) else '-'}"
        )
    joints = _stack(pred[0], path, "xyz_list", NUM_JOINTS)
    verts = None if pred[1] == [] else _stack(pred[1], path, "verts_list", None)
    if verts is not None and len(verts) != len(joints):
        raise ValueError(f"{path}: xyz_list has {len(joints)} entries but verts_list has {len(verts)}")
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
    (keys of :data:`handrecon.eval.metrics.METRIC_KEYS` plus n_samples, split, pred_file;
    vertex keys None when not computable) and writes metrics.json and PCK plots to out_dir."""
    pred_path = Path(pred_path)
    pred_joints, pred_verts = load_prediction(pred_path)
    gt_joints, gt_verts = load_ground_truth(gt_root, split)
    if len(pred_joints) != len(gt_joints):
        raise ValueError(
            f"{pred_path}: {len(pred_joints)} predictions but the {split} ground truth in {gt_root} "
            f"has {len(gt_joints)} samples"
        )
    metrics, curves = evaluate_arrays(pred_joints, gt_joints, pred_verts, gt_verts, return_curves=True)
    metrics["split"] = split
    metrics["pred_file"] = str(pred_path)
    out = Path(out_dir) if out_dir is not None else pred_path.parent
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "metrics.json", "w") as fo:
        json.dump(metrics, fo, indent=2)
    if plots:
        thr_mm = curves["thresholds_m"] * 1000.0
        save_pck_plot(
            {
                "PA-aligned": (thr_mm, curves["pck_joints_aligned"]),
                "root-relative": (thr_mm, curves["pck_joints"]),
            },
            out / "pck_joints.png",
            title=f"FreiHAND {split}: 3D joints",
        )
        if curves["pck_verts_aligned"] is not None:
            save_pck_plot(
                {"PA-aligned": (thr_mm, curves["pck_verts_aligned"])},
                out / "pck_verts.png",
                title=f"FreiHAND {split}: mesh vertices",
                ylabel="PCV",
            )
    return metrics


def format_table(metrics: dict) -> str:
    """Two-column text table of the metric keys (``-`` for values that were not computable)."""
    rows = [(k, metrics.get(k)) for k in (*METRIC_KEYS, "n_samples")]
    width = max(len(k) for k, _ in rows)
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  --------"]
    for k, v in rows:
        val = "-" if v is None else (f"{v:d}" if isinstance(v, int) else f"{v:.4f}")
        lines.append(f"{k:<{width}}  {val}")
    return "\n".join(lines)


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
    out = Path(args.out_dir) if args.out_dir else Path(args.pred_json).parent
    print(f"metrics written to {out / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
