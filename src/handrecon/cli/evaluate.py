"""``python -m handrecon task=evaluate data=freihand data.root=... ckpt=PATH [out=DIR]``.

Runs the model over the data's test split (FreiHAND: evaluation; HO3D: evaluation) and writes the
benchmark's submission file ``pred.json`` (FreiHAND: [xyz, verts] in metres, camera frame; HO3D:
its joint order and OpenGL axes) and ``pred.zip`` (pred.json at the archive's root, what the
servers take), and prints the command that scores it locally. Where the split has 3D ground
truth it also writes ``metrics.json`` and PCK-curve plots; otherwise ``metrics.json`` holds the
counts (images whose keypoints came from the 2D branch, placeholders) and null metrics.

A submission never holds a wrong entry: an evaluation image that cannot be read stops the run,
naming it (``bad_eval_images=fail``, the default); with ``bad_eval_images=placeholder`` its entry
is written as all zeros and listed, with every other such entry, in ``placeholders.json`` beside
pred.json. (Training's readers substitute another sample for a bad image; evaluation never does.)
"""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

log = logging.getLogger(__name__)

BAD_IMAGE_POLICIES = ("fail", "placeholder")


class BadEvaluationImage(RuntimeError):
    """An evaluation image that cannot be read (task=evaluate never substitutes another image)."""


class _EvalSamples(Dataset):
    """The test set's samples by position, without the training readers' substitution of a bad
    image: a sample whose image cannot be read comes back as ``{"_bad": (position, name, path, reason)}``."""

    def __init__(self, ds) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict:
        from handrecon.data.images import CorruptImageError

        load = getattr(self.ds, "load_sample", None)
        if load is None:  # a plain Dataset (no substitution to avoid)
            return {**self.ds[i], "_pos": int(i)}
        try:
            return {**load(i), "_pos": int(i)}
        except CorruptImageError as e:
            return {"_bad": (int(i), _sample_name(self.ds, i), e.path, e.reason)}


def _sample_name(ds, i: int) -> str:
    """The benchmark's name of sample i (FreiHAND: 8-digit image number, HO3D: <seq>/<frame>)."""
    try:
        if hasattr(ds, "_items"):
            return f"{int(ds._items[i]):08d}"
        if hasattr(ds, "names") and hasattr(ds, "ids"):
            return str(ds.names[int(ds.ids[i])])
    except Exception:  # noqa: BLE001 - a name is only for the message
        pass
    return str(i)


def _collate(items: list[dict]):
    """-> (default-collated batch of the readable samples or None, [(position, name, path, reason)] of bad ones)."""
    good = [it for it in items if "_bad" not in it]
    bad = [it["_bad"] for it in items if "_bad" in it]
    return (torch.utils.data.default_collate(good) if good else None), bad


def _write_zip(pred_path: Path) -> Path:
    """pred.zip beside pred.json, holding pred.json at its root (as ``zip -j pred.zip pred.json``)."""
    zpath = pred_path.with_suffix(".zip")
    tmp = zpath.with_name(zpath.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.write(pred_path, arcname="pred.json")
    tmp.replace(zpath)
    return zpath


def _score_command(name: str, pred_path: Path, root, version) -> str:
    """The command that scores pred.json locally (the ground-truth folder when it is known)."""
    root = Path(root) if root else None
    if name == "ho3d":
        gt = root if root is not None and (root / "evaluation_xyz.json").is_file() else None
        gt_s = str(gt) if gt else "<folder with HO3D's released evaluation_xyz.json and evaluation_verts.json>"
        return f"python -m handrecon.eval.ho3d {pred_path} {gt_s} --version {version or 'v2'}"
    gt = root if root is not None and (root / "evaluation_xyz.json").is_file() else None
    gt_s = str(gt) if gt else "<FreiHAND folder with evaluation_xyz.json and evaluation_verts.json (FreiHAND_pub_v2_eval)>"
    return f"python -m handrecon.eval.freihand {pred_path} {gt_s}"


def _check_image_size(cfg: DictConfig, train_cfg) -> dict:
    """Warn when the evaluation runs at another input size than the checkpoint was trained at."""
    now = OmegaConf.select(cfg, "data.image_size", default=None)
    trained = OmegaConf.select(train_cfg, "data.image_size", default=None) if train_cfg is not None else None
    if now is not None and trained is not None and int(now) != int(trained):
        log.warning("evaluating at data.image_size=%s px, but the checkpoint %s was trained at %s px: the network "
                    "sees the hands at another scale than in training (set data.image_size=%s to evaluate as trained)",
                    now, cfg.ckpt, trained, trained)
        print(f"warning: evaluating at {now} px; the checkpoint was trained at {trained} px (data.image_size={trained})")
    return {"image_size": None if now is None else int(now), "trained_image_size": None if trained is None else int(trained)}


def tips_of_the_evaluation_data(hand_model, train_cfg: DictConfig, data_cfg: DictConfig) -> list[int] | None:
    """A MANO hand model whose fingertip vertices were its training data's convention takes the
    evaluated data's instead (``data.mano_tip_vertex_ids``: a FreiHAND-trained model scored on HO3D
    puts the index and middle tips at HO3D's 333 and 444). Tips chosen explicitly at training
    (``hand_model.tip_vertex_ids`` other than the training data's) stay. -> the new ids, or None."""
    from handrecon.models.hand_model import MANO_NUM_VERTS, MANO_TIP_VERTEX_IDS

    if not hasattr(hand_model, "set_tip_vertex_ids") or getattr(hand_model, "is_openhand", False) \
            or hand_model.num_verts != MANO_NUM_VERTS:
        return None
    want = OmegaConf.select(data_cfg, "mano_tip_vertex_ids", default=None)
    if want is None:
        return None
    want, have = [int(i) for i in want], list(hand_model.tip_vertex_ids)
    trained = OmegaConf.select(train_cfg, "data.mano_tip_vertex_ids", default=None)
    from_data = have == ([int(i) for i in trained] if trained is not None else list(MANO_TIP_VERTEX_IDS))
    if want == have or not from_data:
        return None
    hand_model.set_tip_vertex_ids(want)
    return want


def evaluate(cfg: DictConfig) -> dict:
    from handrecon.cli.checkpoint import command_line_hand_model_path, load_module
    from handrecon.cli.realdata import OPT_OUT_KEY, check_mano_for_real_data
    from handrecon.eval.exporters import write_freihand_pred
    from handrecon.eval.metrics import METRIC_KEYS, evaluate_arrays
    from handrecon.eval.plots import save_pck_plot
    from handrecon.models.network import missing_detections

    if not cfg.ckpt:
        raise ValueError("task=evaluate needs ckpt=<path to a handrecon .ckpt>")
    policy = str(OmegaConf.select(cfg, "bad_eval_images", default="fail"))
    if policy not in BAD_IMAGE_POLICIES:
        raise ValueError(f"bad_eval_images={policy!r}: expected one of {BAD_IMAGE_POLICIES}")
    module, train_cfg = load_module(cfg.ckpt, hand_model_path=command_line_hand_model_path(cfg))
    # pred.json is scored against the data of THIS command line
    check_mano_for_real_data(cfg.data, module.net.hand_model, bool(OmegaConf.select(cfg, OPT_OUT_KEY, default=False)),
                             "evaluate")
    sizes = _check_image_size(cfg, train_cfg)
    tips = tips_of_the_evaluation_data(module.net.hand_model, train_cfg, cfg.data)
    if tips:
        log.info("fingertip keypoints at MANO vertices %s: the convention of data=%s (the checkpoint's came from its "
                 "training data)", tips, OmegaConf.select(cfg, "data.name", default="?"))
    out = Path(cfg.out or cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    # the data of THIS command line (e.g. data=freihand data.root=...), not of the training run
    dm = hydra.utils.instantiate(cfg.data)
    dm.prepare_data()
    dm.setup("test")
    ds = dm.test_set
    if ds is None:
        raise ValueError("task=evaluate: the data config has no test_dataset")
    n = len(ds)
    loader = DataLoader(_EvalSamples(ds), batch_size=dm.val_batch_size, shuffle=False, num_workers=dm.num_workers,
                        collate_fn=_collate)
    joints: np.ndarray | None = None
    verts: np.ndarray | None = None
    gt_j: np.ndarray | None = None
    gt_v: np.ndarray | None = None
    has = np.zeros(n, bool)
    has_v = np.zeros(n, bool)
    filled = np.zeros(n, bool)
    bad: list[tuple[int, str, str, str]] = []
    reads_detections = module.net.keypoints_in == "detections"
    n_branch = 0  # images of a keypoint-reading model without detections: its 2D branch stood in
    with torch.no_grad():
        for batch, bad_items in tqdm(loader, desc="evaluate", unit="batch"):
            if bad_items and policy == "fail":
                i, name, path, reason = bad_items[0]
                raise BadEvaluationImage(
                    f"evaluation image {name} (sample {i} of {n}) cannot be read: {path}: {reason}. A submission "
                    "needs a prediction for every image: re-download or re-extract it, or pass "
                    "bad_eval_images=placeholder to write an all-zero entry for it, listed in placeholders.json"
                )
            bad += bad_items
            if batch is None:
                continue
            idx = batch.pop("_pos").numpy()  # positions in the split (= entries of pred.json)
            if reads_detections:
                n_branch += int(missing_detections(batch["kp2d_conf"]).sum())
            o = module.run_net(batch, with_appearance=False, with_kp_branch=False)
            pj, pv = o.joints.numpy(), o.eval_verts.numpy()  # MANO topology for a model of another topology (NIMBLE)
            gj, gv = batch["joints3d"].numpy(), batch["verts3d"].numpy()
            if joints is None:
                joints, verts = np.zeros((n, *pj.shape[1:])), np.zeros((n, *pv.shape[1:]))
                gt_j, gt_v = np.zeros((n, *gj.shape[1:])), np.zeros((n, *gv.shape[1:]))
            joints[idx], verts[idx], gt_j[idx], gt_v[idx] = pj, pv, gj, gv
            has[idx] = batch["has_3d"].numpy().astype(bool)
            has_v[idx] = batch["has_verts"].numpy().astype(bool) if "has_verts" in batch else True
            filled[idx] = True
    if joints is None:
        raise BadEvaluationImage(f"none of the {n} evaluation images could be read (first: {bad[0][2]}: {bad[0][3]})")
    assert filled.sum() + len(bad) == n, (filled.sum(), len(bad), n)
    name = str(OmegaConf.select(cfg, "data.name", default="freihand"))
    if name == "ho3d":
        from handrecon.eval.ho3d import write_ho3d_pred

        pred_path = write_ho3d_pred(out / "pred.json", joints, verts)
    else:
        pred_path = write_freihand_pred(out / "pred.json", joints, verts)
    zip_path = _write_zip(pred_path)
    extra: dict = {"keypoints_from_2d_branch": n_branch} if reads_detections else {}
    extra.update(sizes)
    if policy == "placeholder":
        extra["placeholders"] = len(bad)
        report = {
            "pred_file": str(pred_path),
            "placeholder": "all-zero joints and vertices (the benchmarks' zero predictor), not a prediction",
            "entries": [{"position": i, "name": nm, "file": p, "reason": r} for i, nm, p, r in sorted(bad)],
        }
        (out / "placeholders.json").write_text(json.dumps(report, indent=2))
        if bad:
            lines = "\n".join(f"  #{i} {nm}: {p} ({r})" for i, nm, p, r in sorted(bad))
            log.warning("%d evaluation image(s) could not be read; their entries in %s are all-zero placeholders "
                        "(listed in %s):\n%s", len(bad), pred_path, out / "placeholders.json", lines)
    print(f"submission file: {pred_path} ({n} samples; {len(bad)} placeholders)" if bad else
          f"submission file: {pred_path} ({n} samples)")
    result: dict = {"pred": str(pred_path), "zip": str(zip_path), "n_samples": int(n), **extra}
    if n_branch:
        log.warning("%d of %d images have no detections (%s): the model's own 2D branch gave their keypoints",
                    n_branch, n, getattr(ds, "detections_path", "<data.root>/detections/<split>.json"))
    ok = filled
    if has[ok].all() and ok.any() and not bad:
        with_v = bool(has_v.all()) and verts.shape[1] == gt_v.shape[1]
        if has_v.all() and not with_v:  # joints compare, meshes of different topologies do not
            log.warning("the ground-truth meshes have %d vertices, the predicted (evaluation) meshes %d: another "
                        "topology, so only the joint metrics are computed", gt_v.shape[1], verts.shape[1])
        metrics, curves = evaluate_arrays(joints, gt_j, verts if with_v else None, gt_v if with_v else None,
                                          return_curves=True)
        (out / "metrics.json").write_text(json.dumps({**metrics, **extra}, indent=2))
        t_mm = curves["thresholds_m"] * 1000.0
        plots = {k: (t_mm, v) for k, v in curves.items() if k != "thresholds_m" and v is not None}
        save_pck_plot(plots, out / "pck.png")
        print("\n".join(f"  {k:<24} {'-' if v is None else v}" for k, v in metrics.items()))
        result["metrics"] = metrics
    else:
        if bad and has[ok].all():
            log.warning("%d placeholder entries: no metrics computed (score pred.json with the command below: the "
                        "placeholders count as the zero predictor there)", len(bad))
        elif has.any():
            log.warning("only %d of %d samples have 3D ground truth: no metrics computed", has.sum(), n)
        # the counts still reach metrics.json; no metric can be computed without ground truth
        (out / "metrics.json").write_text(json.dumps({**{k: None for k in METRIC_KEYS}, "n_samples": int(n), **extra},
                                                     indent=2))
        if not has.any():
            print("this split has no 3D ground truth here (metrics.json: null metrics, the counts)")
    cmd = _score_command(name, pred_path, getattr(ds, "root", None), OmegaConf.select(cfg, "data.version", default=None))
    result["score_command"] = cmd
    print(f"server upload: {zip_path} (pred.json at its root)")
    print(f"score it locally: {cmd}")
    return result
