"""THE hand model layer: pose (PCA or axis-angle) + shape -> mesh and the 21 canonical keypoints.

One class, :class:`HandModel`, for both handrecon's open hand model (the default, shipped in
``assets/OPENHAND_RIGHT.pkl``) and the licensed MANO model (``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl``).
Both files are read by :func:`handrecon.models.mano_io.load_mano_pickle` (no chumpy) and both go
through the same ``smplx.MANO`` layer (given the arrays as a ``data_struct``; smplx never opens the
file). The file is read once, at construction.

Left hands: the open hand model's left hand is the mirror image (x -> -x) of its right hand, with the
relationship MANO's two files have (template, joints and blend shapes mirrored, face winding flipped,
the pose space mirrored as axis-angle: (x, y, z) -> (x, -y, -z) per joint). For the official
``MANO_LEFT.pkl``, whose shapedirs carry the x sign of the right hand (a known defect of the
released file, smplx issue #48), the x components are flipped when ``MANO_RIGHT.pkl`` lies beside it
and confirms the defect.
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from handrecon.joints import MANO_PARENTS, MANO_TO_CANONICAL
from handrecon.models.mano_io import load_mano_pickle, resolve_model_file

#: MANO's fingertip vertex ids used by the method's reference code (thumb, index, middle, ring, little)
MANO_TIP_VERTEX_IDS: tuple[int, ...] = (744, 320, 443, 555, 672)
MANO_NUM_VERTS = 778
_REQUIRED = ("v_template", "f", "J_regressor", "weights", "kintree_table", "shapedirs", "posedirs",
             "hands_components", "hands_mean")


@dataclass
class HandOutput:
    verts: torch.Tensor  # (B, V, 3) metres, model frame (+ transl)
    joints: torch.Tensor  # (B, 21, 3) canonical (FreiHAND) order: 16 MANO joints + 5 tip vertices
    local_pose: torch.Tensor  # (B, 15, 3) finger joint rotations (axis-angle, hands mean included), MANO order
    full_pose: torch.Tensor  # (B, 48) global orientation + local_pose
    mano_verts: torch.Tensor | None = None  # (B, 778, 3) MANO topology, for a model of another topology (NIMBLE)


def default_asset_path() -> Path:
    """The shipped open hand model (``handrecon.models.openhand.ASSET_PATH``)."""
    return Path(__file__).resolve().parent / "assets" / "OPENHAND_RIGHT.pkl"


def mirror_model(data: dict) -> dict:
    """The mirror image (x -> -x) of a MANO-layout model dict (right <-> left)."""
    out = dict(data)
    sx = np.array([-1.0, 1.0, 1.0])
    out["v_template"] = np.asarray(data["v_template"]) * sx
    if "J" in data:
        out["J"] = np.asarray(data["J"]) * sx
    out["f"] = np.asarray(data["f"])[:, [0, 2, 1]]
    sd = np.array(data["shapedirs"], copy=True)
    sd[:, 0, :] *= -1
    out["shapedirs"] = sd
    # pose features are (R_j - I) entries; mirroring maps R -> M R M, i.e. entry (i, j) gets the sign
    # m_i m_j, and the vertex offsets get M on their x component
    pd = np.array(data["posedirs"], copy=True)
    m = np.array([-1.0, 1.0, 1.0])
    feat_sign = np.tile(np.outer(m, m).ravel(), pd.shape[-1] // 9)
    pd = pd * m[None, :, None] * feat_sign[None, None, :].astype(pd.dtype)
    out["posedirs"] = pd.astype(np.asarray(data["posedirs"]).dtype)
    aa = np.tile([1.0, -1.0, -1.0], 15)
    out["hands_components"] = np.asarray(data["hands_components"]) * aa[None, :]
    out["hands_mean"] = np.asarray(data["hands_mean"]) * aa
    return out


def _file_side(path: Path) -> str | None:
    name = path.name.upper()
    if "LEFT" in name:
        return "left"
    if "RIGHT" in name:
        return "right"
    return None


def _fix_official_left_shapedirs(data: dict, left_file: Path) -> dict:
    right_file = left_file.with_name(left_file.name.upper().replace("LEFT", "RIGHT"))
    if not right_file.is_file() or right_file.resolve() == left_file.resolve():
        right_file = left_file.with_name("MANO_RIGHT.pkl")
    if not right_file.is_file() or right_file.resolve() == left_file.resolve():
        return data
    right = load_mano_pickle(right_file)
    l_sd, r_sd = np.asarray(data["shapedirs"]), np.asarray(right["shapedirs"])
    if l_sd.shape == r_sd.shape and np.abs(l_sd[:, 0] - r_sd[:, 0]).sum() < 1.0 and np.abs(r_sd[:, 0]).sum() > 1.0:
        data = dict(data)
        sd = np.array(l_sd, copy=True)
        sd[:, 0, :] *= -1
        data["shapedirs"] = sd
    return data


def gives_mano_meshes(hand_model) -> bool:
    """Whether a hand layer's output includes meshes of MANO's topology (778 vertices), which the
    official FreiHAND / HO3D scorers compare: MANO itself (or a MANO-layout file of 778 vertices), or a
    model with a MANO-topology output (``num_mano_verts``, NIMBLE); not the open hand model."""
    if getattr(hand_model, "is_openhand", False):
        return False
    n = getattr(hand_model, "num_mano_verts", None) or getattr(hand_model, "num_verts", 0)
    return int(n) == MANO_NUM_VERTS


def check_model_arrays(data: dict, source: str | os.PathLike) -> None:
    """Every array of a MANO-layout model must agree with the others in size (V vertices from
    ``v_template``, J = 16 joints from ``kintree_table``) and hold finite numbers; otherwise one
    ValueError naming the file and every array that does not fit, with the shape expected."""
    import scipy.sparse

    def shape(k):
        v = data[k]
        return tuple(v.shape) if scipy.sparse.issparse(v) else np.shape(v)

    problems = []
    vt = shape("v_template")
    if len(vt) != 2 or vt[1] != 3 or vt[0] < 1:
        raise ValueError(f"{source}: 'v_template' has shape {vt}; expected (V, 3) vertex positions")
    V = vt[0]
    J = len(MANO_PARENTS)
    expected = {
        "kintree_table": ((2, J), "2 x J"),
        "J_regressor": ((J, V), "J x V"),
        "weights": ((V, J), "V x J"),
        "posedirs": ((V, 3, 9 * (J - 1)), "V x 3 x 9(J-1)"),
        "hands_mean": ((3 * (J - 1),), "3(J-1)"),
        "J": ((J, 3), "J x 3"),
    }
    for k, (want, what) in expected.items():
        if k in data and shape(k) != want:
            problems.append(f"'{k}' has shape {shape(k)}; expected {want} ({what})")
    sd = shape("shapedirs")
    if len(sd) != 3 or sd[:2] != (V, 3) or sd[2] < 1:
        problems.append(f"'shapedirs' has shape {sd}; expected ({V}, 3, number of shape components)")
    hc = shape("hands_components")
    if len(hc) != 2 or hc[1] != 3 * (J - 1) or not 1 <= hc[0] <= 3 * (J - 1):
        problems.append(f"'hands_components' has shape {hc}; expected (k <= 45, 45) pose PCA components")
    if "hands_coeffs" in data and (len(shape("hands_coeffs")) != 2 or shape("hands_coeffs")[1] != 3 * (J - 1)):
        problems.append(f"'hands_coeffs' has shape {shape('hands_coeffs')}; expected (N, 45) recorded poses")
    f = np.asarray(data["f"])
    if f.ndim != 2 or f.shape[1] != 3 or f.dtype.kind not in "iu":
        problems.append(f"'f' has shape {f.shape} and dtype {f.dtype}; expected (F, 3) integer vertex ids")
    elif f.size and (f.min() < 0 or f.max() >= V):
        problems.append(f"'f' refers to vertices {f.min()}..{f.max()}, but the model has {V} (0..{V - 1})")
    if "tip_vertex_ids" in data:
        t = np.asarray(data["tip_vertex_ids"]).ravel()
        if t.size != 5 or t.min() < 0 or t.max() >= V:
            problems.append(f"'tip_vertex_ids' is {t.tolist()}; expected 5 vertex ids in [0, {V})")
    if not problems:
        for k in ("v_template", "J_regressor", "weights", "shapedirs", "posedirs", "hands_components", "hands_mean"):
            v = data[k]
            vals = v.data if scipy.sparse.issparse(v) else np.asarray(v)
            if vals.dtype.kind == "f" and not np.isfinite(vals).all():
                problems.append(f"'{k}' holds {int((~np.isfinite(vals)).sum())} non-finite values")
    if problems:
        raise ValueError(f"{source}: not a consistent MANO-layout hand model (V = {V} vertices from 'v_template', "
                         f"J = {J} joints): " + "; ".join(problems))


def model_side(data: dict) -> str | None:
    """Which hand a MANO-layout model is, from its rest joints: 'right', 'left' or None (undecided).

    The thumb's tip joint lies on the palm side of the plane of the palm (wrist, index and little
    finger bases); the palm side is the side of (wrist -> middle base) x (little base -> index base)
    for a left hand and the opposite one for a right hand. A mirror image flips the sign, a rotation
    does not. The value (the thumb tip's height over the palm plane per wrist-to-middle-base length):
    MANO_RIGHT.pkl -0.26, its mirror image (the left hand) +0.26, the open hand model -0.38.
    |value| < 0.05 is undecided.
    """
    import scipy.sparse

    reg = data["J_regressor"]
    reg = reg.toarray() if scipy.sparse.issparse(reg) else np.asarray(reg)
    J = reg @ np.asarray(data["v_template"], np.float64)
    wrist, index1, middle1, little1, thumb3 = J[0], J[1], J[4], J[7], J[15]
    along = middle1 - wrist
    n = np.cross(along, index1 - little1)
    scale = np.linalg.norm(along) * np.linalg.norm(n)
    if scale <= 0 or not np.isfinite(scale):
        return None
    s = float((thumb3 - wrist) @ n / scale)
    return "right" if s < -0.05 else "left" if s > 0.05 else None


def load_hand_data(path: str | os.PathLike | None = None, side: str = "right") -> tuple[dict, str]:
    """The model arrays for ``side`` -> (MANO-layout dict, source description).

    path: None (the shipped open hand model), a MANO-layout .pkl file, or a folder holding
    MANO_RIGHT.pkl / MANO_LEFT.pkl. The file's hand is what its name says (LEFT / RIGHT) and what its
    geometry says (:func:`model_side`); a file of the other hand than ``side`` is mirrored. A name that
    contradicts the geometry, and a left hand under a name that says neither (asked for as a right
    hand), are errors.
    """
    if side not in ("right", "left"):
        raise ValueError(f"hand_model.side must be 'right' or 'left', got {side!r}")
    if path is None or str(path) == "":
        file = default_asset_path()
    else:
        file = resolve_model_file(path, side)
    data = load_mano_pickle(file)
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise ValueError(f"{file}: not a MANO-layout hand model, missing keys {missing}")
    check_model_arrays(data, file)
    named, shaped = _file_side(file), model_side(data)
    if named and shaped and named != shaped:
        raise ValueError(f"{file}: the file name says {named.upper()} but the model is a {shaped} hand (its thumb lies "
                         f"on the {shaped} hand's side of the palm); rename the file or pass the {named} hand's file")
    if not named and shaped == "left" and side == "right":
        raise ValueError(
            f"{file}: this is a LEFT hand model (its thumb lies on the left hand's side of the palm), but a right "
            f"hand was asked for (hand_model.side=right) and the file name says neither LEFT nor RIGHT. Pass the right "
            f"hand's file (MANO_RIGHT.pkl), or give this one a name with LEFT in it (e.g. MANO_LEFT.pkl) to have "
            f"handrecon mirror it into a right hand"
        )
    file_side = named or shaped or "right"
    if file_side == "left" and "openhand_version" not in data:
        data = _fix_official_left_shapedirs(data, file)
    if file_side != side:
        data = mirror_model(data)
    return data, str(file)


class HandModel(nn.Module):
    """The hand layer (MANO-layout model through smplx.MANO).

    Args:
        path: None -> the shipped open hand model; a folder -> MANO_RIGHT.pkl / MANO_LEFT.pkl by
            ``side``; or a .pkl file.
        side: 'right' or 'left'.
        use_pca: hand_pose is ``num_pca_comps`` PCA coefficients (else 45 axis-angle values).
        num_pca_comps: 1..45.
        flat_hand_mean: if False, the model's hands_mean is added to the finger pose.
        tip_vertex_ids: 5 vertex ids (thumb, index, middle, ring, little); None -> the model file's
            ``tip_vertex_ids``, else MANO's reference ids for a 778-vertex mesh.

    forward(hand_pose (B, pose_dim), betas (B, 10), global_orient (B, 3) | None, transl (B, 3) | None)
    -> :class:`HandOutput`. All model arrays are buffers that are not saved in checkpoints (the model
    file is the source of truth; a licensed MANO file never ends up inside a checkpoint).
    """

    def __init__(self, path: str | os.PathLike | None = None, side: str = "right", use_pca: bool = True,
                 num_pca_comps: int = 30, flat_hand_mean: bool = False, tip_vertex_ids=None) -> None:
        super().__init__()
        import smplx
        from smplx.utils import Struct

        from handrecon.models.anatomy import joint_frames

        num_pca_comps = int(num_pca_comps)
        if use_pca and not 1 <= num_pca_comps <= 45:
            raise ValueError(f"hand_model.num_pca_comps must be in 1..45, got {num_pca_comps}")
        data, self.source = load_hand_data(path, side)
        self.side = side
        self.use_pca = bool(use_pca)
        self.num_pca_comps = num_pca_comps if use_pca else 45
        self.flat_hand_mean = bool(flat_hand_mean)
        self.is_openhand = "openhand_version" in data
        V = int(np.asarray(data["v_template"]).shape[0])
        self.num_verts = V
        if tip_vertex_ids is None:
            if "tip_vertex_ids" in data:
                tip_vertex_ids = [int(i) for i in np.asarray(data["tip_vertex_ids"]).ravel()]
            elif V == MANO_NUM_VERTS:
                tip_vertex_ids = list(MANO_TIP_VERTEX_IDS)
            else:
                raise ValueError(f"{self.source}: the model has {V} vertices and no 'tip_vertex_ids'; pass "
                                 "hand_model.tip_vertex_ids=[thumb, index, middle, ring, little] vertex ids")
        tip_vertex_ids = [int(i) for i in tip_vertex_ids]
        if len(tip_vertex_ids) != 5 or min(tip_vertex_ids) < 0 or max(tip_vertex_ids) >= V:
            raise ValueError(f"hand_model.tip_vertex_ids must be 5 vertex ids in [0, {V}), got {tip_vertex_ids}")
        self.tip_vertex_ids = tip_vertex_ids

        struct = Struct(**{k: data[k] for k in _REQUIRED})
        with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a note about 10 shape components
            self.mano = smplx.MANO(self.source, is_rhand=side == "right", data_struct=struct, use_pca=False,
                                   num_pca_comps=45, flat_hand_mean=flat_hand_mean, create_global_orient=False,
                                   create_hand_pose=False, create_betas=False, create_transl=False,
                                   create_body_pose=False, batch_size=1)
        self.num_betas = int(self.mano.num_betas)
        self.pose_dim = self.num_pca_comps if self.use_pca else 45
        comps = np.asarray(data["hands_components"], np.float64)[: self.pose_dim]
        if self.use_pca and len(comps) < self.pose_dim:
            raise ValueError(f"{self.source}: hand_model.num_pca_comps={self.pose_dim}, but the model has only "
                             f"{len(comps)} pose PCA components ('hands_components')")
        dtype = self.mano.v_template.dtype
        self.register_buffer("hand_components", torch.as_tensor(comps, dtype=dtype), persistent=False)
        faces = np.asarray(data["f"]).astype(np.int64)
        self.register_buffer("faces", torch.as_tensor(faces), persistent=False)
        self.register_buffer("tip_ids", torch.as_tensor(tip_vertex_ids, dtype=torch.long), persistent=False)
        self.register_buffer("mano_to_canonical", torch.as_tensor(MANO_TO_CANONICAL, dtype=torch.long),
                             persistent=False)
        import scipy.sparse

        reg = data["J_regressor"]
        reg = reg.toarray() if scipy.sparse.issparse(reg) else np.asarray(reg)
        template_joints = reg @ np.asarray(data["v_template"], np.float64)  # (16, 3)
        self.register_buffer("template_joints", torch.as_tensor(template_joints, dtype=dtype), persistent=False)
        self.register_buffer("joint_frames", joint_frames(self.template_joints, MANO_PARENTS, side),
                             persistent=False)
        for module in self.mano.modules():  # smplx's buffers: derived from the file, not checkpoint state
            for name, _ in list(module.named_buffers(recurse=False)):
                module._non_persistent_buffers_set.add(name)

    def set_tip_vertex_ids(self, tip_vertex_ids) -> None:
        """Take the fingertip keypoints at other vertices (thumb, index, middle, ring, little)."""
        ids = [int(i) for i in tip_vertex_ids]
        if len(ids) != 5 or min(ids) < 0 or max(ids) >= self.num_verts:
            raise ValueError(f"hand_model.tip_vertex_ids must be 5 vertex ids in [0, {self.num_verts}), got {ids}")
        self.tip_vertex_ids = ids
        self.tip_ids.copy_(torch.as_tensor(ids, dtype=torch.long, device=self.tip_ids.device))

    @property
    def hands_mean(self) -> torch.Tensor:
        """(45,) the mean finger pose added to every pose (zeros when flat_hand_mean)."""
        return self.mano.hand_mean

    def forward(self, hand_pose: torch.Tensor, betas: torch.Tensor, global_orient: torch.Tensor | None = None,
                transl: torch.Tensor | None = None) -> HandOutput:
        if hand_pose.dim() != 2 or hand_pose.shape[1] != self.pose_dim:
            raise ValueError(f"HandModel: hand_pose must be (B, {self.pose_dim}), got {tuple(hand_pose.shape)}")
        B = hand_pose.shape[0]
        if betas.shape != (B, self.num_betas):
            raise ValueError(f"HandModel: betas must be ({B}, {self.num_betas}), got {tuple(betas.shape)}")
        dtype = self.mano.v_template.dtype
        hand_pose, betas = hand_pose.to(dtype), betas.to(dtype)
        if global_orient is None:
            global_orient = hand_pose.new_zeros(B, 3)
        elif global_orient.shape != (B, 3):
            raise ValueError(f"HandModel: global_orient must be ({B}, 3), got {tuple(global_orient.shape)}")
        if transl is not None and transl.shape != (B, 3):
            raise ValueError(f"HandModel: transl must be ({B}, 3), got {tuple(transl.shape)}")
        aa = hand_pose @ self.hand_components if self.use_pca else hand_pose  # (B, 45)
        out = self.mano(betas=betas, global_orient=global_orient.to(dtype), hand_pose=aa,
                        transl=None if transl is None else transl.to(dtype), return_full_pose=True)
        verts = out.vertices  # (B, V, 3)
        tips = verts[:, self.tip_ids]  # (B, 5, 3)
        joints = torch.cat([out.joints, tips], 1)[:, self.mano_to_canonical]  # (B, 21, 3)
        full_pose = out.full_pose  # (B, 48)
        return HandOutput(verts=verts, joints=joints, local_pose=full_pose[:, 3:].reshape(B, 15, 3),
                          full_pose=full_pose)

    def mean_output(self, batch_size: int = 1) -> HandOutput:
        """The hand at zero pose coefficients and zero shape (the mean pose unless flat_hand_mean)."""
        z = self.mano.v_template
        return self(z.new_zeros(batch_size, self.pose_dim), z.new_zeros(batch_size, self.num_betas))

    def extra_repr(self) -> str:
        return (f"source={self.source}, side={self.side}, num_verts={self.num_verts}, pose_dim={self.pose_dim}, "
                f"flat_hand_mean={self.flat_hand_mean}")
