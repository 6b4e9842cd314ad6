"""``python -m handrecon task=evaluate data=freihand data.root=... ckpt=PATH [out=DIR]``.

Runs the model over the data's test split (FreiHAND: evaluation; HO3D: evaluation) and writes the
benchmark's submission file ``pred.json`` (FreiHAND: [xyz, verts] in metres, camera frame; HO3D:
its joint order and OpenGL axes). Where the split has 3D ground truth it also writes
``metrics.json`` and PCK-curve plots.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict:
    from handrecon.cli.checkpoint import command_line_hand_model_path, load_module
    from handrecon.cli.realdata import OPT_OUT_KEY, check_mano_for_real_data
    from handrecon.eval.exporters import write_freihand_pred
    from handrecon.eval.metrics import evaluate_arrays
    from handrecon.eval.plots import save_pck_plot
    from handrecon.models.network import missing_detections

    if not cfg.ckpt:
        raise ValueError("task=evaluate needs ckpt=<path to a handrecon .ckpt>")
    module, _ = load_module(cfg.ckpt, hand_model_path=command_line_hand_model_path(cfg))
    # pred.json is scored against the data of THIS command line
    check_mano_for_real_data(cfg.data, module.net.hand_model, bool(OmegaConf.select(cfg, OPT_OUT_KEY, default=False)),
                             "evaluate")
    out = Path(cfg.out or cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    # the data of THIS command line (e.g. data=freihand data.root=...), not of the training run
    dm = hydra.utils.instantiate(cfg.data)
    dm.prepare_data()
    dm.setup("test")
    joints, verts, gt_j, gt_v, has = [], [], [], [], []
    reads_detections = module.net.keypoints_in == "detections"
    n_branch = 0  # images of a keypoint-reading model without detections: its 2D branch stood in
    with torch.no_grad():
        for batch in tqdm(dm.test_dataloader(), desc="evaluate", unit="batch"):
            if reads_detections:
                n_branch += int(missing_detections(batch["kp2d_conf"]).sum())
            o = module.run_net(batch, with_appearance=False, with_kp_branch=False)
            joints.append(o.joints.numpy())
            verts.append(o.eval_verts.numpy())  # MANO topology for a model of another topology (NIMBLE)
            gt_j.append(batch["joints3d"].numpy())
            gt_v.append(batch["verts3d"].numpy())
            has.append(batch["has_3d"].numpy())
    joints, verts = np.concatenate(joints), np.concatenate(verts)
    has = np.concatenate(has).astype(bool)
    name = str(OmegaConf.select(cfg, "data.name", default="freihand"))
    if name == "ho3d":
        from handrecon.eval.ho3d import write_ho3d_pred

        pred_path = write_ho3d_pred(out / "pred.json", joints, verts)
    else:
        pred_path = write_freihand_pred(out / "pred.json", joints, verts)
    print(f"submission file: {pred_path} ({len(joints)} samples)")
    extra = {"keypoints_from_2d_branch": n_branch} if reads_detections else {}
    result: dict = {"pred": str(pred_path), "n_samples": int(len(joints)), **extra}
    if n_branch:
        log.warning("%d of %d images have no detections (<data.root>/detections/<split>.json): the model's own 2D "
                    "branch gave their keypoints", n_branch, len(joints))
    if has.all() and len(has):
        gj, gv = np.concatenate(gt_j), np.concatenate(gt_v)
        if verts.shape[1] != gv.shape[1]:  # joints compare, meshes of different topologies do not
            log.warning("the ground-truth meshes have %d vertices, the predicted (evaluation) meshes %d: another "
                        "topology, so only the joint metrics are computed", gv.shape[1], verts.shape[1])
            metrics, curves = evaluate_arrays(joints, gj, None, None, return_curves=True)
        else:
            metrics, curves = evaluate_arrays(joints, gj, verts, gv, return_curves=True)
        (out / "metrics.json").write_text(json.dumps({**metrics, **extra}, indent=2))
        t_mm = curves["thresholds_m"] * 1000.0
        plots = {k: (t_mm, v) for k, v in curves.items() if k != "thresholds_m" and v is not None}
        save_pck_plot(plots, out / "pck.png")
        print("\n".join(f"  {k:<22} {v}" for k, v in metrics.items()))
        result["metrics"] = metrics
    elif has.any():
        log.warning("only %d of %d samples have 3D ground truth: no metrics written", has.sum(), len(has))
    else:
        print("this split has no 3D ground truth: submit pred.json to the benchmark's server")
    return result
