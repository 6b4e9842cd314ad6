"""The self-supervised objective: the method's loss terms with configurable weights.

Which terms are active in a training stage is decided by the stage config (``active``); the
weights live here (conf/loss/s2hand.yaml). A term is computed only when it is active AND its
weight is non-zero, so the inputs of a disabled term may be absent (None).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from handrecon.losses import terms as T
from handrecon.losses.mesh import CotangentLaplacian

#: handrecon term name -> the reference configs' loss name
METHOD_NAMES: dict[str, str] = {
    "kp2d": "open_2dj",
    "bone_dir": "open_bone_direc",
    "pose_prior": "tsa_poses",
    "scale": "mscale",
    "hm": "hm_integral",
    "kp_cons": "kp_cons",
    "photo": "texture",
    "mean_rgb": "mrgb",
    "tex_reg": "mtex",
    "laplacian": "triangle",
    "shape": "mshape",
    "ssim": "ssim_tex",
    "silhouette": "sil",
    "sup_3d": "joint_3d",
}
#: all term names, in evaluation order
TERM_NAMES: tuple[str, ...] = tuple(METHOD_NAMES)
#: accepted spellings in ``active``: handrecon names and the reference names
_ALIASES: dict[str, str] = {**{t: t for t in TERM_NAMES}, **{m: t for t, m in METHOD_NAMES.items()}}


class NonFiniteLossError(FloatingPointError):
    """A loss term was NaN or infinite. ``term``: its name; ``names``: the batch's sample names
    (those of the offending samples where they could be told apart), or None."""

    def __init__(self, term: str, names: Sequence[str] | None = None):
        self.term = term
        self.names = list(names) if names is not None else None
        where = f" (samples: {', '.join(map(str, self.names))})" if self.names else ""
        super().__init__(f"loss term {term!r} ({METHOD_NAMES.get(term, term)}) is not finite{where}")


@dataclass
class LossInputs:
    """Everything the terms may read; a field a disabled term alone needs may stay None.

    2D in pixels of the crop, 3D in metres (camera frame), images channels-last in [0, 1].
    """

    kp2d_proj: Tensor | None = None  # (B, 21, 2) projected 3D joints
    joints3d: Tensor | None = None  # (B, 21, 3) camera frame
    verts: Tensor | None = None  # (B, V, 3) predicted mesh (camera frame) for the Laplacian
    betas: Tensor | None = None  # (B, 10)
    pose_violation: Tensor | None = None  # (B, 15, 3) raw [x, y, z] axis-angle outside the prior's box, rad
    kp2d_stages: list[Tensor] | None = None  # per hourglass stage (B, 21, 2)
    texture: Tensor | None = None  # (B, V or F, 3)
    render_rgb: Tensor | None = None  # (B, H, W, 3)
    render_silhouette: Tensor | None = None  # (B, H, W)
    image: Tensor | None = None  # (B, H, W, 3)
    mask: Tensor | None = None  # (B, H, W)
    has_mask: Tensor | None = None  # (B,) bool
    det_uv: Tensor | None = None  # (B, 21, 2) offline detections
    det_conf: Tensor | None = None  # (B, 21)
    appearance_weight: Tensor | None = None  # (B,) per-sample weight of the appearance terms
    gt_joints3d: Tensor | None = None  # (B, 21, 3) camera frame (ablations only)
    has_3d: Tensor | None = None  # (B,) bool
    names: list[str] | None = None  # sample names, for error messages


def _need(x: LossInputs, term: str, *fields: str) -> list:
    out = []
    for f in fields:
        v = getattr(x, f)
        if v is None:
            raise ValueError(
                f"loss term {term!r} ({METHOD_NAMES[term]}) is active with a non-zero weight but "
                f"LossInputs.{f} is None; provide it, or set its weight to 0 / leave it out of the stage's losses"
            )
        out.append(v)
    return out


class SSLObjective(nn.Module):
    """Weighted sum of the method's loss terms.

    Weight names map to the method's (reference config) names:
    w_kp2d = open_2dj, w_bone_dir = open_bone_direc, w_pose_prior = tsa_poses, w_scale = mscale,
    w_hm = hm_integral, w_kp_cons = kp_cons, w_photo = texture, w_mean_rgb = mrgb,
    w_tex_reg = mtex, w_laplacian = triangle, w_shape = mshape; optional: w_ssim = ssim_tex,
    w_silhouette = sil (datasets with masks), w_sup_3d = joint_3d (semi-supervised ablations).
    The defaults are the method's; the optional and supervised terms default to 0 (off).

    Term names used in ``active`` (the method's names are accepted too): kp2d, bone_dir,
    pose_prior, scale, hm, kp_cons, photo, mean_rgb, tex_reg, laplacian, shape, ssim,
    silhouette, sup_3d.

    Batch averaging (as the reference). Each term gives one value per sample; samples are averaged
    with weights:
    - kp2d, hm: the sample's total keypoint weight, so the result equals the reference's
      normalisation by the sum of the weights over the whole batch;
    - bone_dir: uniform (each sample's value is already its mean over the 20 confidence-weighted
      bones: the reference's mean over B x 20 bones, not divided by the sum of the weights);
    - photo, mean_rgb, ssim, tex_reg: (reliability_weight(det_conf) x appearance_weight)^2, the
      reference's squared ``texture_con`` (FreiHAND: originals 1.1, background-augmented copies
      0.1, set by the dataset); the reference weighted mtex by 2c instead (a known fault, fixed);
    - silhouette: has_mask; sup_3d: has_3d; all others: uniform.
    A batch whose weights are all 0 gives 0 for that term.

    Other settings: ref_bone_length (mscale, metres), conf_threshold (reliability), z_weight
    (tsa_poses: weight of the z component), laplacian_weights ('first': the batch's first mesh
    gives the cotangent weights, as the reference; 'each': every mesh its own), robust_beta (px,
    open_2dj / kp_cons smoothing), nonfinite: 'raise' raises
    NonFiniteLossError naming the term and samples; 'skip' returns total None and the dict with
    'nonfinite_term' (the term's name) so the training step can be skipped.

    The mesh (faces) of the Laplacian is set once with :meth:`set_mesh`.
    """

    def __init__(
        self,
        w_kp2d: float = 1e-3,
        w_bone_dir: float = 0.1,
        w_pose_prior: float = 0.1,
        w_scale: float = 0.1,
        w_hm: float = 1e-3,
        w_kp_cons: float = 2e-4,
        w_photo: float = 5e-3,
        w_mean_rgb: float = 1e-3,
        w_tex_reg: float = 5e-3,
        w_laplacian: float = 0.1,
        w_shape: float = 1e-2,
        w_ssim: float = 0.0,
        w_silhouette: float = 0.0,
        w_sup_3d: float = 0.0,
        ref_bone_length: float = 0.0282,
        conf_threshold: float = 0.1,
        z_weight: float = 2.0,
        laplacian_weights: str = "first",
        robust_beta: float = 5.0,
        nonfinite: str = "raise",
    ):
        super().__init__()
        weights = {
            "kp2d": w_kp2d, "bone_dir": w_bone_dir, "pose_prior": w_pose_prior, "scale": w_scale,
            "hm": w_hm, "kp_cons": w_kp_cons, "photo": w_photo, "mean_rgb": w_mean_rgb,
            "tex_reg": w_tex_reg, "laplacian": w_laplacian, "shape": w_shape, "ssim": w_ssim,
            "silhouette": w_silhouette, "sup_3d": w_sup_3d,
        }  # fmt: skip
        for name, w in weights.items():
            w = float(w)
            if not (w >= 0.0 and w != float("inf")):
                raise ValueError(f"loss weight w_{name} must be a finite number >= 0, got {w}")
            weights[name] = w
        if nonfinite not in ("raise", "skip"):
            raise ValueError(f"loss.nonfinite must be 'raise' or 'skip', got {nonfinite!r}")
        if ref_bone_length <= 0 or robust_beta <= 0:
            raise ValueError("loss.ref_bone_length and loss.robust_beta must be positive")
        self.weights: dict[str, float] = weights
        self.ref_bone_length = float(ref_bone_length)
        self.conf_threshold = float(conf_threshold)
        self.z_weight = float(z_weight)
        if laplacian_weights not in ("first", "each"):
            raise ValueError(f"loss.laplacian_weights must be 'first' or 'each', got {laplacian_weights!r}")
        self.laplacian_weights = laplacian_weights
        self.robust_beta = float(robust_beta)
        self.nonfinite = nonfinite
        self.register_buffer("joint_weight", T.default_joint_weight(), persistent=False)  # (21,)
        self.laplacian: CotangentLaplacian | None = None

    # ------------------------------------------------------------------ setup

    def set_mesh(self, faces, num_verts: int) -> None:
        """Build the cotangent Laplacian of the mesh faces (F, 3) with num_verts vertices (once)."""
        self.laplacian = CotangentLaplacian(faces, num_verts, self.laplacian_weights)
        self.laplacian.to(self.joint_weight.device)

    @staticmethod
    def resolve(active: Collection[str] | None) -> set[str]:
        """Term names from handrecon or reference spellings (None = every term)."""
        if active is None:
            return set(TERM_NAMES)
        if isinstance(active, str):
            active = [active]
        out = set()
        for a in active:
            if a not in _ALIASES:
                raise ValueError(f"unknown loss term {a!r}; expected one of {list(TERM_NAMES)} "
                                 f"or the method's names {list(METHOD_NAMES.values())}")
            out.add(_ALIASES[a])
        return out

    def enabled(self, active: Collection[str] | None) -> list[str]:
        """The terms forward() will compute: active and with a non-zero weight, in TERM_NAMES order."""
        act = self.resolve(active)
        return [t for t in TERM_NAMES if t in act and self.weights[t] != 0.0]

    # ------------------------------------------------------------------ terms

    def _appearance_weight(self, x: LossInputs, term: str) -> Tensor:
        (conf,) = _need(x, term, "det_conf")
        w = T.reliability_weight(conf, self.conf_threshold)
        if x.appearance_weight is not None:
            w = w * x.appearance_weight.to(w)
        return w * w

    def _term(self, name: str, x: LossInputs) -> tuple[Tensor, Tensor | None]:
        """(per-sample values (B,), sample weights (B,) or None for uniform)."""
        if name == "kp2d":
            pred, det, conf = _need(x, name, "kp2d_proj", "det_uv", "det_conf")
            jw = self.joint_weight
            return (T.kp2d_loss(pred, det, conf, jw, self.robust_beta), T.keypoint_weights(conf, jw).sum(-1))
        if name == "bone_dir":
            pred, det, conf = _need(x, name, "kp2d_proj", "det_uv", "det_conf")
            return T.bone_direction_loss(pred, det, conf), None
        if name == "pose_prior":
            (v,) = _need(x, name, "pose_violation")
            return T.pose_prior_loss(v, self.z_weight), None
        if name == "scale":
            (j,) = _need(x, name, "joints3d")
            return T.scale_loss(j, self.ref_bone_length), None
        if name == "hm":
            stages, det, conf = _need(x, name, "kp2d_stages", "det_uv", "det_conf")
            return T.heatmap_integral_loss(stages, det, conf), (conf * conf).sum(-1)
        if name == "kp_cons":
            stages, proj = _need(x, name, "kp2d_stages", "kp2d_proj")
            return T.kp_consistency_loss(stages[-1], proj, self.robust_beta), None
        if name in ("photo", "mean_rgb", "ssim"):
            rgb, sil, img = _need(x, name, "render_rgb", "render_silhouette", "image")
            fn = {"photo": T.photometric_loss, "mean_rgb": T.mean_rgb_loss, "ssim": T.ssim_loss}[name]
            return fn(rgb, img, sil), self._appearance_weight(x, name)
        if name == "tex_reg":
            (tex,) = _need(x, name, "texture")
            return T.texture_outlier_loss(tex), self._appearance_weight(x, name)
        if name == "laplacian":
            (verts,) = _need(x, name, "verts")
            if self.laplacian is None:
                raise ValueError("loss term 'laplacian' (triangle) needs the mesh: call SSLObjective.set_mesh(faces, "
                                 "num_verts) once before training, or set w_laplacian to 0")
            return T.laplacian_loss(verts, self.laplacian), None
        if name == "shape":
            (betas,) = _need(x, name, "betas")
            return T.shape_loss(betas), None
        if name == "silhouette":
            sil, mask, has = _need(x, name, "render_silhouette", "mask", "has_mask")
            return T.silhouette_loss(sil, mask, has), has.to(sil.dtype)
        if name == "sup_3d":
            pred, gt, has = _need(x, name, "joints3d", "gt_joints3d", "has_3d")
            return T.joints3d_loss(pred, gt, has), has.to(pred.dtype)
        raise ValueError(f"unknown loss term {name!r}")

    # ------------------------------------------------------------------ forward

    def forward(self, inputs: LossInputs, active: Collection[str] | None) -> tuple[Tensor | None, dict]:
        """-> (total: scalar Tensor, or None when a term is non-finite and nonfinite='skip';
        {term: scalar unweighted batch value, detached} (+ 'nonfinite_term': str when skipped))."""
        names = self.enabled(active)
        values: dict[str, Tensor] = {}
        per_sample: dict[str, Tensor] = {}
        for name in names:
            per, sw = self._term(name, inputs)  # (B,), (B,) | None
            per_sample[name] = per
            if sw is None:
                values[name] = per.mean()
            else:
                values[name] = T.weighted_mean(per, sw.to(per), dim=0)
        logs: dict = {k: v.detach() for k, v in values.items()}
        if not values:
            raise ValueError(f"no loss term to compute: active={sorted(self.resolve(active))} and the "
                             f"non-zero weights are {[k for k, w in self.weights.items() if w != 0.0]}")
        stacked = torch.stack([v.reshape(()).float() for v in values.values()])
        if not bool(torch.isfinite(stacked).all()):  # one host sync per step
            bad = next(n for n, v in zip(values, stacked) if not torch.isfinite(v))
            if self.nonfinite == "raise":
                raise NonFiniteLossError(bad, self._bad_names(per_sample[bad], inputs.names))
            logs["nonfinite_term"] = bad
            return None, logs
        total = sum(self.weights[n] * v for n, v in values.items())
        return total, logs

    @staticmethod
    def _bad_names(per: Tensor, names: Sequence[str] | None) -> list[str] | None:
        if names is None:
            return None
        bad = (~torch.isfinite(per.detach())).nonzero().flatten().tolist()
        if not bad or len(names) != per.shape[0]:
            return list(names)
        return [names[i] for i in bad]

    def extra_repr(self) -> str:
        w = ", ".join(f"w_{k}={v:g}" for k, v in self.weights.items())
        return f"{w}, nonfinite={self.nonfinite!r}"
