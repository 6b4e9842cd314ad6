"""``python -m handrecon task=export ckpt=PATH format=onnx|torchscript|both [out=DIR]``.

Exports image (B, 3, S, S) in [0, 1] + K (B, 3, 3) -> (pose, betas, rot_aa, scale, transl,
verts, joints) of the trained network (the 3D path; appearance and the 2D branch are left out);
verts are the evaluation mesh (``eval_verts``: MANO's 778-vertex topology with hand_model=nimble).
A network that reads 2D detections (model.keypoints_in=detections) takes two more inputs,
keypoints_uv (B, 21, 2) crop pixels and keypoints_conf (B, 21) (every image with at least one
detected keypoint: the exported graph does not fall back on the 2D branch).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from handrecon.geometry.camera import crop_intrinsics

log = logging.getLogger(__name__)

OUTPUT_NAMES = ("pose", "betas", "rot_aa", "scale", "transl", "verts", "joints")


class ExportWrapper(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor, K: torch.Tensor, keypoints_uv: torch.Tensor | None = None,
                keypoints_conf: torch.Tensor | None = None):
        kp = None if keypoints_uv is None else (keypoints_uv, keypoints_conf)
        o = self.net(image, K, with_appearance=False, with_kp_branch=False, keypoints=kp)
        return o.pose, o.betas, o.rot_aa, o.scale, o.transl, o.eval_verts, o.joints  # MANO topology for NIMBLE


def example_inputs(net: nn.Module, image_size: int, batch: int = 2) -> dict[str, torch.Tensor]:
    """Inputs of the exported graph by name: image, K (+ keypoints_uv, keypoints_conf for a network
    that reads 2D detections)."""
    g = torch.Generator().manual_seed(0)
    inputs = {"image": torch.rand(batch, 3, image_size, image_size, generator=g),
              "K": torch.from_numpy(crop_intrinsics(image_size)).float().expand(batch, 3, 3).contiguous()}
    if getattr(net, "keypoints_in", None) == "detections":
        inputs["keypoints_uv"] = torch.rand(batch, 21, 2, generator=g) * image_size
        inputs["keypoints_conf"] = 0.5 + 0.5 * torch.rand(batch, 21, generator=g)
    return inputs


def export_model(net: nn.Module, image_size: int, out_dir: Path, fmt: str = "both") -> dict[str, str]:
    if fmt not in ("onnx", "torchscript", "both"):
        raise ValueError(f"format={fmt!r}: expected onnx, torchscript or both")
    out_dir.mkdir(parents=True, exist_ok=True)
    wrapper = ExportWrapper(net).eval()
    inputs = example_inputs(net, image_size)
    args, names = tuple(inputs.values()), list(inputs)
    files: dict[str, str] = {}
    if fmt in ("torchscript", "both"):
        with torch.no_grad():
            ts = torch.jit.trace(wrapper, args, check_trace=False)
        p = out_dir / "handrecon.torchscript.pt"
        ts.save(str(p))
        files["torchscript"] = str(p)
    if fmt in ("onnx", "both"):
        p = out_dir / "handrecon.onnx"
        torch.onnx.export(
            wrapper, args, str(p), input_names=names, output_names=list(OUTPUT_NAMES),
            dynamic_axes={n: {0: "batch"} for n in (*names, *OUTPUT_NAMES)}, opset_version=17, dynamo=False,
        )  # fmt: skip
        files["onnx"] = str(p)
    (out_dir / "export.json").write_text(json.dumps({"image_size": image_size, "inputs": names,
                                                     "outputs": list(OUTPUT_NAMES), "files": files}, indent=2))
    return files


def export(cfg: DictConfig) -> dict[str, str]:
    from handrecon.cli.checkpoint import command_line_hand_model_path, load_module
    from handrecon.cli.realdata import warn_if_trained_without_mano

    if not cfg.ckpt:
        raise ValueError("task=export needs ckpt=<path to a handrecon .ckpt>")
    module, train_cfg = load_module(cfg.ckpt, hand_model_path=command_line_hand_model_path(cfg))
    warn_if_trained_without_mano(train_cfg, module.net.hand_model, "export")
    out = Path(cfg.out or cfg.paths.output_dir)
    files = export_model(module.net, int(train_cfg.data.image_size), out, str(cfg.format))
    for k, v in files.items():
        print(f"exported {k}: {v}")
    return files
