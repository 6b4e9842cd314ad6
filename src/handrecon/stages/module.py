"""The LightningModule of every training stage.

A stage is configuration, not code (conf/stage/*.yaml): which network parts train
(``train_parts``; the others are frozen and kept in eval mode), which loss terms are on
(``loss_terms``; a term also needs a non-zero weight in conf/loss), the optimiser and the
learning-rate schedule, and the checkpoint metric.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.rank_zero import rank_zero_only
from torch import nn

from handrecon.geometry import camera
from handrecon.models import anatomy
from handrecon.models.network import PARTS, HandReconNet, HandReconOutput
from handrecon.stages import visualize

log = logging.getLogger(__name__)

#: loss terms that need the rendered hand / the 2D keypoint branch / the appearance head
RENDER_TERMS = {"photo", "mean_rgb", "ssim", "silhouette"}
KP_BRANCH_TERMS = {"hm", "kp_cons"}
APPEARANCE_TERMS = RENDER_TERMS | {"tex_reg"}


class HandReconModule(pl.LightningModule):
    """One training stage of the method: the network, the self-supervised objective, the renderer
    and the stage's configuration (parts to train, loss terms, optimiser, schedule, checkpoint metric).
    Validation and test report the evaluator's metrics (mm) on images with 3D ground truth."""

    def __init__(self, net: HandReconNet, objective: nn.Module, renderer: nn.Module, stage: dict,
                 config: dict | None = None, log_images_every_n_steps: int = 200):
        super().__init__()
        self.net, self.objective, self.renderer = net, objective, renderer
        self.stage = dict(stage)
        self.config = config
        self.log_images_every_n_steps = int(log_images_every_n_steps)
        self.save_hyperparameters({"config": config, "stage": self.stage})
        unknown = set(self.stage["train_parts"]) - set(PARTS)
        if unknown:
            raise ValueError(f"stage.train_parts has unknown parts {sorted(unknown)}; expected a subset of {PARTS}")
        self.loss_terms = set(self.objective.resolve(self.stage["loss_terms"]))
        self.objective.set_mesh(net.hand_model.faces, net.hand_model.num_verts)
        if "pose_prior" in self.objective.enabled(self.loss_terms) and not getattr(net.hand_model, "mano_pose_frame", True):
            log.warning("pose prior (tsa_poses): %s's bone rotations are not MANO axis-angles, the reference's table "
                        "does not apply: the term is 0 (as in the NIMBLE fork of the reference)", type(net.hand_model).__name__)
        rendered = sorted(set(self.objective.enabled(self.loss_terms)) & RENDER_TERMS)
        if rendered and not getattr(renderer, "differentiable", True):
            raise ValueError(f"renderer {type(renderer).__name__} keeps no gradients, but stage {self.stage['name']} "
                             f"trains through rendered terms {rendered}; use renderer=soft (or pytorch3d) for training")
        self._freeze()
        self.train(True)
        from handrecon.eval.metrics import HandMetrics

        self.val_metrics = HandMetrics()
        self.val_baseline = HandMetrics()
        self.test_metrics = HandMetrics()
        self._kp_err_sum = 0.0
        self._kp_err_n = 0
        self.skipped_batches = 0  # batches skipped for a non-finite loss or gradient (nonfinite=skip)
        self.bad_samples = {"train": 0, "val": 0}  # unreadable/corrupt image files passed over by the datasets
        self._val2d: dict[str, list[float]] = {}

    # ------------------------------------------------------------------ parts / freezing
    def _freeze(self) -> None:
        train = set(self.stage["train_parts"])
        for name in PARTS:
            part = self.net.part(name)
            if part is not None:
                part.requires_grad_(name in train)
        missing = [n for n in train if self.net.part(n) is None]
        if missing:
            raise ValueError(f"stage {self.stage['name']} trains {missing}, which this model does not have (model.use_*)")

    def train(self, mode: bool = True):
        """``nn.Module.train``; in training mode the frozen parts stay in eval mode (their batch norms
        keep their statistics)."""
        super().train(mode)
        if mode:  # frozen parts keep their batch-norm statistics
            for name in PARTS:
                part = self.net.part(name)
                if part is not None and name not in self.stage["train_parts"]:
                    part.eval()
        return self

    def on_train_start(self) -> None:
        """Lightning hook, once before the first training epoch: Lightning does not call .train()
        there, so the frozen parts are put in eval mode here."""
        self.train(True)

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        """A resumed run continues the saved run's random streams from its first batch on (after the
        DataLoader of the resumed epoch was made, which draws from them)."""
        state = getattr(self, "_rng_to_restore", None)
        if state:
            _set_rng_state(state)
        self._rng_to_restore = None

    def on_train_epoch_start(self) -> None:
        """Lightning hook, each training epoch: back to training mode after validation, frozen parts in eval mode."""
        self.train(True)

    def needs(self) -> tuple[bool, bool, bool]:
        """(render, appearance head, kp branch) needed by this stage's active terms."""
        active = set(self.objective.enabled(self.loss_terms))  # on in this stage and weight != 0
        kp = bool(active & KP_BRANCH_TERMS) or "kp_branch" in self.stage["train_parts"]
        return bool(active & RENDER_TERMS), bool(active & APPEARANCE_TERMS), kp

    # ------------------------------------------------------------------ forward helpers
    def forward(self, image: torch.Tensor, K: torch.Tensor, **kw) -> HandReconOutput:
        """The network: (B, 3, H, W) images in [0, 1] and (B, 3, 3) intrinsics -> HandReconOutput."""
        return self.net(image, K, **kw)

    def run_net(self, batch: dict, **kw) -> HandReconOutput:
        """The network on a batch; a regressor that reads 2D detections (model.keypoints_in=detections)
        gets the batch's offline detections (images without any: the network's own 2D branch)."""
        kp = (batch["kp2d"], batch["kp2d_conf"]) if self.net.keypoints_in == "detections" and "kp2d" in batch else None
        return self.net(batch["image"], batch["K"], keypoints=kp, **kw)

    def render(self, out: HandReconOutput, K: torch.Tensor, size: tuple[int, int], background=None, renderer=None):
        """The predicted hand, textured and lit, with this module's renderer or ``renderer``.

        Per-face colours (model.appearance=reference) are rendered on the mesh with its faces'
        corners unshared (3 vertices per face, each with its face's colour and normal): flat colour
        and shading per face, as the reference's renderer draws them."""
        from handrecon.render.base import Lighting, UVTexture

        light = Lighting.from_vector(out.lighting) if out.lighting is not None else None
        hm = self.net.hand_model
        if out.face_texture is not None:
            verts = out.verts[:, hm.faces.reshape(-1)]  # (B, 3F, 3)
            colors = out.face_texture.repeat_interleave(3, dim=1)
            flat = torch.arange(verts.shape[1], device=hm.faces.device, dtype=hm.faces.dtype).view(-1, 3)
            return (renderer or self.renderer)(verts, flat, colors, K, size, light, background)
        colors = out.texture if out.texture is not None else torch.full_like(out.verts, 0.7)
        if colors.dim() == 4:  # a UV albedo map (a hand model with a texture space: NIMBLE)
            colors = UVTexture(colors, hm.verts_uvs, hm.faces_uvs)
        return (renderer or self.renderer)(out.verts, hm.faces, colors, K, size, light, background)

    def _loss_inputs(self, batch: dict, out: HandReconOutput, rend) -> Any:
        from handrecon.losses.objective import LossInputs

        violation = None
        if "pose_prior" in self.loss_terms:
            if getattr(self.net.hand_model, "mano_pose_frame", True):
                violation = anatomy.pose_violation(out.local_pose, getattr(self.net.hand_model, "side", "right"))
            else:  # the reference's table bounds MANO's axis-angles; this model's bones (NIMBLE) are not in MANO's frame
                violation = torch.zeros_like(out.local_pose)
        return LossInputs(
            kp2d_proj=out.kp2d_proj, joints3d=out.joints, verts=out.verts, betas=out.betas,
            pose_violation=violation, kp2d_stages=out.kp2d_stages,
            texture=out.face_texture if out.face_texture is not None else (
                out.texture.flatten(1, 2) if out.texture is not None and out.texture.dim() == 4 else out.texture),
            render_rgb=None if rend is None else rend.rgb, render_silhouette=None if rend is None else rend.silhouette,
            image=batch["image"].permute(0, 2, 3, 1), mask=batch.get("mask"), has_mask=batch.get("has_mask"),
            det_uv=batch["kp2d"], det_conf=batch["kp2d_conf"], appearance_weight=batch.get("appearance_weight"),
            gt_joints3d=batch.get("joints3d"), has_3d=batch.get("has_3d"), names=batch.get("name"),
        )  # fmt: skip

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict, batch_idx: int):
        """Lightning hook: the stage's weighted loss of one batch (None skips the batch when a term is
        non-finite and nonfinite=skip); logs every term as train/<term> and, every
        log_images_every_n_steps, an overlay of the prediction."""
        need_render, need_app, need_kp = self.needs()
        image, K = batch["image"], batch["K"]
        self._count_bad_samples(batch, "train")
        # nonfinite=skip: a skipped batch must leave no trace, batch-norm running statistics included
        self._norm_snapshot = self._norm_buffers_copy() if self._skips_nonfinite() else None
        out = self.run_net(batch, with_appearance=need_app, with_kp_branch=need_kp)
        rend = self.render(out, K, tuple(image.shape[-2:])) if need_render else None
        total, terms = self.objective(self._loss_inputs(batch, out, rend), self.loss_terms)
        bs = image.shape[0]
        if total is None:  # non-finite loss with nonfinite=skip: skip this batch, loudly
            log.warning("step %d: non-finite loss term %s, batch skipped", self.global_step, terms.get("nonfinite_term"))
            self._skip_batch(bs)
            return None
        for k, v in terms.items():
            if isinstance(v, torch.Tensor):
                self.log(f"train/{k}", v, on_step=True, on_epoch=True, batch_size=bs)
        self.log("train/loss", total, prog_bar=True, on_step=True, on_epoch=True, batch_size=bs)
        if self.log_images_every_n_steps > 0 and self.global_step % self.log_images_every_n_steps == 0:
            self._log_overlay(batch, out, rend, "train")
        return total

    def on_before_optimizer_step(self, optimizer) -> None:
        """A finite loss can still have a non-finite gradient: never step on it. nonfinite=raise
        stops naming the parameters; nonfinite=skip drops this step's gradients (logged)."""
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if not grads or bool(torch.isfinite(torch.stack([g.norm() for g in grads]).sum())):
            return
        bad = [n for n, p in self.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
        msg = f"step {self.global_step}: non-finite gradient in {len(bad)} parameters ({', '.join(bad[:4])}, ...)"
        if getattr(self.objective, "nonfinite", "raise") == "raise":
            raise FloatingPointError(msg + "; set nonfinite=skip to skip such steps")
        log.warning("%s: step skipped", msg)
        for p in self.parameters():
            p.grad = None
        self._skip_batch(None)

    # ------------------------------------------------------------------ skipped batches and samples
    def _count_bad_samples(self, batch: dict, split: str) -> None:
        n = int(batch["bad_skipped"].sum()) if "bad_skipped" in batch else 0
        if n:
            self.bad_samples[split] += n

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """The run's counters travel with last.ckpt (a resumed run's summary counts the whole run)."""
        checkpoint["handrecon_counters"] = {"skipped_batches": int(self.skipped_batches),
                                            "bad_samples": {k: int(v) for k, v in self.bad_samples.items()}}
        checkpoint["handrecon_rng"] = _rng_state()  # plain types: loadable with weights_only=True

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._rng_to_restore = checkpoint.get("handrecon_rng")
        c = checkpoint.get("handrecon_counters") or {}
        self.skipped_batches = int(c.get("skipped_batches", 0))
        self.bad_samples.update({k: int(v) for k, v in (c.get("bad_samples") or {}).items()})

    def _skips_nonfinite(self) -> bool:
        return getattr(self.objective, "nonfinite", "raise") == "skip"

    def _norm_buffers(self) -> list[torch.Tensor]:
        return [b for m in self.modules() if isinstance(m, nn.modules.batchnorm._NormBase)
                for b in (m.running_mean, m.running_var, m.num_batches_tracked) if b is not None]

    def _norm_buffers_copy(self) -> list[torch.Tensor]:
        return [b.detach().clone() for b in self._norm_buffers()]

    def _skip_batch(self, batch_size: int | None) -> None:
        """Undo the skipped forward pass's batch-norm statistics update, count and log the skip."""
        snap = getattr(self, "_norm_snapshot", None)
        if snap is not None:
            with torch.no_grad():
                for b, saved in zip(self._norm_buffers(), snap):
                    b.copy_(saved)
        self._norm_snapshot = None
        self.skipped_batches += 1
        self.log("train/skipped_batches", 1.0, reduce_fx="sum", on_step=False, on_epoch=True, batch_size=batch_size)

    # ------------------------------------------------------------------ validation / test
    def _eval_step(self, batch: dict, metrics, prefix: str, with_appearance: bool = False):
        image, K = batch["image"], batch["K"]
        _, _, need_kp = self.needs()
        out = self.run_net(batch, with_appearance=with_appearance, with_kp_branch=need_kp)
        has = batch["has_3d"].bool()
        if has.any():
            # ground-truth meshes (HO3D has none): without them the vertex metrics stay null, not 0
            with_v = bool(batch["has_verts"][has].all()) if "has_verts" in batch else True
            gt_v = batch["verts3d"][has] if with_v else None
            pred_v = out.eval_verts[has] if with_v else None
            if gt_v is not None and pred_v.shape[1] != gt_v.shape[1]:  # joints compare, meshes of different topologies do not
                self._mesh_topology_mismatch(pred_v.shape[1], gt_v.shape[1])
                pred_v = gt_v = None
            metrics.update(out.joints[has], batch["joints3d"][has], pred_v, gt_v)
            if prefix == "val":
                n = int(has.sum())
                mean = self.net.hand_model(torch.zeros(n, self.net.hand_model.pose_dim, device=image.device),
                                           torch.zeros(n, self.net.hand_model.num_betas, device=image.device))
                mean_v = mean.mano_verts if mean.mano_verts is not None else mean.verts
                self.val_baseline.update(mean.joints, batch["joints3d"][has], None if gt_v is None else mean_v, gt_v)
                if out.kp2d_stages is not None:
                    gt_uv = camera.project(batch["joints3d"][has], K[has])
                    err = (out.kp2d_stages[-1][has] - gt_uv).norm(dim=-1).mean(-1)
                    self._kp_err_sum += float(err.sum())
                    self._kp_err_n += int(err.numel())
        return out

    def _mesh_topology_mismatch(self, n_pred: int, n_gt: int) -> None:
        """Warn once: the data's 3D mesh has another topology than the model's evaluation mesh, so
        only the joint metrics are computed (the mesh metrics are left out, not computed wrongly)."""
        if getattr(self, "_warned_topology", False):
            return
        self._warned_topology = True
        log.warning("evaluation: the data's ground-truth mesh has %d vertices, the model's evaluation mesh %d "
                    "(another topology, e.g. hand_model=nimble's MANO-topology output on data made with the open "
                    "hand model): only the joint metrics are computed, the mesh metrics are left out", n_gt, n_pred)

    def _accumulate(self, key: str, value: torch.Tensor, weight: torch.Tensor) -> None:
        """Add sum(value * weight) and sum(weight) to the epoch's weighted mean of ``key``."""
        acc = self._val2d.setdefault(key, [0.0, 0.0])
        acc[0] += float((value * weight).sum())
        acc[1] += float(weight.sum())

    def _val_2d(self, batch: dict, out: HandReconOutput, rend) -> None:
        """What is known without 3D labels, on every validation image (data.labels=2d picks checkpoints
        by these): the projected joints' and the 2D branch's pixel error against the detections
        (keypoints of confidence >= loss.conf_threshold, averaged over them), and the photometric /
        silhouette terms of the rendered hand where the stage renders."""
        det, conf = batch["kp2d"], batch["kp2d_conf"]
        valid = (conf >= getattr(self.objective, "conf_threshold", 0.1)).to(det.dtype)
        self._accumulate("kp2d_det_err_px", (out.kp2d_proj - det).norm(dim=-1), valid)
        if out.kp2d_stages is not None:
            self._accumulate("kp_branch_det_err_px", (out.kp2d_stages[-1] - det).norm(dim=-1), valid)
        if rend is not None:
            from handrecon.losses import terms as LT

            img = batch["image"].permute(0, 2, 3, 1)
            ones = torch.ones(img.shape[0], device=img.device)
            self._accumulate("photo", LT.photometric_loss(rend.rgb, img, rend.silhouette), ones)
            has_mask = batch.get("has_mask")
            if has_mask is not None and bool(has_mask.any()):
                sil = LT.silhouette_loss(rend.silhouette, batch["mask"], has_mask)
                self._accumulate("silhouette", sil, has_mask.to(sil.dtype))

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0):
        """Lightning hook: accumulates the metrics, the mean-pose baseline and the 2D metrics of one
        validation batch (of any of the validation loaders, e.g. data=mix's one per set); the first
        batch's overlay is logged."""
        log_now = batch_idx == 0 and dataloader_idx == 0 and self.log_images_every_n_steps > 0 and self.logger is not None
        self._count_bad_samples(batch, "val")
        need_render = self.needs()[0]
        out = self._eval_step(batch, self.val_metrics, "val", with_appearance=log_now or need_render)
        rend = self.render(out, batch["K"], tuple(batch["image"].shape[-2:])) if (log_now or need_render) else None
        self._val_2d(batch, out, rend if need_render else None)
        if log_now:
            self._log_overlay(batch, out, rend, "val")

    def on_validation_epoch_end(self) -> None:
        """Lightning hook: logs val/<metric> (mm), val/baseline_pa_mpjpe_mm and val/kp_branch_err_px
        (px) where the data has 3D labels, val/kp2d_det_err_px, val/kp_branch_det_err_px (px), val/photo
        and val/silhouette (see :meth:`_val_2d`) for every data set, over the epoch, synchronised across
        processes, then resets the accumulators."""
        self._log_metrics(self.val_metrics, "val")
        if self.val_baseline.update_count:
            base = self.val_baseline.compute()
            self.log("val/baseline_pa_mpjpe_mm", float(base["pa_mpjpe_mm"]), sync_dist=True)
            self.val_baseline.reset()
        if self._kp_err_n:
            self.log("val/kp_branch_err_px", self._kp_err_sum / self._kp_err_n, sync_dist=True)
        self._kp_err_sum, self._kp_err_n = 0.0, 0
        for k, (num, den) in self._val2d.items():
            if den > 0:
                self.log(f"val/{k}", num / den, sync_dist=True)
        self._val2d = {}

    def test_step(self, batch: dict, batch_idx: int):
        """Lightning hook: accumulates the test metrics of one batch."""
        self._eval_step(batch, self.test_metrics, "test")

    def on_test_epoch_end(self) -> None:
        """Lightning hook: logs test/<metric> (mm) over the test set."""
        self._log_metrics(self.test_metrics, "test")

    def _log_metrics(self, metrics, prefix: str) -> None:
        if not metrics.update_count:
            return
        for k, v in metrics.compute().items():
            if v is not None and np.isfinite(float(v)):
                self.log(f"{prefix}/{k}", float(v), prog_bar=k == "pa_mpjpe_mm", sync_dist=True)
        metrics.reset()

    # ------------------------------------------------------------------ images
    @rank_zero_only
    def _log_overlay(self, batch: dict, out: HandReconOutput, rend, prefix: str, n: int = 4) -> None:
        """An overlay of the first n images of the batch (rendering, detections, projected joints),
        drawn and logged by global rank 0 only."""
        if self.logger is None:
            return
        tiles = []
        for i in range(min(n, batch["image"].shape[0])):
            img = visualize.image_to_uint8(batch["image"][i])
            if rend is not None:
                img = visualize.overlay_render(img, rend.rgb[i].detach().float().cpu().numpy(),
                                               rend.silhouette[i].detach().float().cpu().numpy())
            img = visualize.draw_keypoints(img, batch["kp2d"][i].cpu().numpy(), batch["kp2d_conf"][i].cpu().numpy(), radius=1)
            img = visualize.draw_keypoints(img, out.kp2d_proj[i].detach().float().cpu().numpy(), radius=2)
            tiles.append(img)
        grid = np.concatenate(tiles, axis=1)
        log_image(self.logger, f"{prefix}/overlay", grid, self.global_step)

    # ------------------------------------------------------------------ optimiser
    def configure_optimizers(self):
        """The stage's optimiser over the trainable parameters and its learning-rate schedule,
        stepped once per epoch: ``stage.optimizer`` and ``stage.lr_scheduler`` are ``_partial_``
        config nodes (conf/stage/*.yaml; the method's Adam + MultiStepLR); lr_scheduler null: none."""
        import hydra

        params = [p for p in self.parameters() if p.requires_grad]
        if not params:
            raise ValueError(f"stage {self.stage['name']}: nothing to train (stage.train_parts={self.stage['train_parts']})")
        for key in ("optimizer", "lr_scheduler"):
            if key not in self.stage:
                raise ValueError(f"stage {self.stage['name']} has no {key} node (conf/stage/*.yaml: a _partial_ "
                                 f"{key} with _target_; lr_scheduler may be null)")
        opt = hydra.utils.instantiate(self.stage["optimizer"])(params)
        if self.stage["lr_scheduler"] is None:
            return opt
        sched = hydra.utils.instantiate(self.stage["lr_scheduler"])(opt)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

    # ------------------------------------------------------------------ init from other stages
    def init_from(self, paths: str | Sequence[str] | None) -> list[str]:
        """Load weights of earlier stages (later paths win). Only matching keys of equal shape are
        taken; what was loaded, and what was skipped (and why), is logged per checkpoint. Returns
        the loaded keys. Checkpoints are read with weights_only=True (they cannot run code)."""
        from handrecon.cli.checkpoint import load_checkpoint_file

        if not paths:
            return []
        if isinstance(paths, str):
            paths = [paths]
        own = self.state_dict()
        loaded: list[str] = []
        self.init_report: dict[str, dict] = {}
        for p in paths:
            if not Path(p).is_file():
                raise FileNotFoundError(f"init_from: checkpoint not found: {p}")
            sd = load_checkpoint_file(p, key="init_from")
            sd = sd.get("state_dict", sd)
            take = {k: v for k, v in sd.items() if k in own and isinstance(v, torch.Tensor) and own[k].shape == v.shape}
            shape = sorted(k for k, v in sd.items() if k in own and isinstance(v, torch.Tensor) and own[k].shape != v.shape)
            absent = sorted(k for k in sd if k not in own)
            not_given = sorted(k for k in own if k not in take)
            if not take:
                raise ValueError(f"init_from: {p} has no weights matching this model "
                                 f"({len(shape)} of other shapes, {len(absent)} unknown to it)")
            own.update(take)
            loaded += list(take)
            parts = sorted({k.split(".")[1] for k in take if k.startswith("net.")})
            log.info("init_from %s: loaded %d tensors (%s)", p, len(take), ", ".join(parts))
            if shape or absent:
                log.warning("init_from %s: skipped %d tensors of other shapes (%s%s) and %d this model does not have "
                            "(%s%s): the checkpoint is of another config", p, len(shape), ", ".join(shape[:5]),
                            ", ..." if len(shape) > 5 else "", len(absent), ", ".join(absent[:5]),
                            ", ..." if len(absent) > 5 else "")
            self.init_report[str(p)] = {"loaded": len(take), "skipped_shape": shape, "skipped_unknown": absent,
                                        "kept_initial": len(not_given)}
        self.load_state_dict(own)
        return loaded


def _rng_state() -> dict:
    import random

    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
            "python": random.getstate()}


def _set_rng_state(state: dict) -> None:
    import random

    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, np.uint32), pos, has_gauss, cached))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))


def log_image(logger, key: str, image: np.ndarray, step: int) -> None:
    """Log an (H, W, 3) uint8 image to whatever logger(s) the run uses."""
    loggers = logger if isinstance(logger, list | tuple) else [logger]
    for lg in loggers:
        exp = getattr(lg, "experiment", None)
        name = type(lg).__name__
        if name == "TensorBoardLogger":
            exp.add_image(key, image, step, dataformats="HWC")
        elif name == "WandbLogger":
            lg.log_image(key=key, images=[image], step=step)
        elif getattr(lg, "log_dir", None):
            import cv2

            d = Path(lg.log_dir) / "images"
            d.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(d / f"{key.replace('/', '_')}_{step:07d}.png"), image[..., ::-1])
