"""The NIMBLE hand model (Li et al., SIGGRAPH 2022) as a hand layer: ``hand_model=nimble``.

NIMBLE is a hand with bones, muscles and a skin, with a 20-component shape space, a 30-component
pose space and a 10-component texture space (diffuse, normal and specular UV maps). Its asset files
are distributed by its authors on request (https://liyuwei.cc/proj/nimble), like MANO: handrecon never
ships them. A folder given as ``hand_model.path`` must hold

  NIMBLE_DICT_9137.pkl   the model: ``vert`` (N, 3) all vertices (bones, then muscles, then skin; mm),
                         ``bone_v_sep`` / ``skin_v_sep`` (ints) where the muscle and skin vertices
                         start, ``skin_f`` (F, 3) int64 skin faces, ``all_sw`` (N, 25) skinning weights,
                         ``all_pbs`` (N, 3, 171) pose blend shapes on the 19 non-root bones' (R - I),
                         ``jreg_bone`` (25, bone_v_sep) joint regressor on the bone vertices,
                         ``jreg_mano`` (21, skin vertices) keypoint regressor on the skin,
                         ``shape_basis`` (Cs, 3N) (x, y, z interleaved per vertex), ``shape_pm_mean`` /
                         ``shape_pm_std`` (Cs,), ``pose_basis`` (Cp, 57), ``pose_mean`` (57,),
                         ``pose_pm_mean`` / ``pose_pm_std`` (Cp,) (and more: muscle and bone faces,
                         collision data, which handrecon does not read)
  NIMBLE_TEX_DICT.pkl    ``{"diffuse" | "normal" | "spec": {"basis": (3 T T, Ct), "mean": (3 T T,),
                         "std": (Ct,)}}``, maps T x T (1024), channels B, G, R (OpenCV order)
  NIMBLE_MANO_VREG.pkl   ``lmk_faces_idx`` (R, 778) int64 skin faces and ``lmk_bary_coords`` (R, 778, 3):
                         R barycentric regressions of MANO's 778 vertices, averaged
  faces_uvs.pt, verts_uvs.pt   the skin's UV map: (1, F, 3) int64 UV indices per face corner and
                         (1, Vt, 2) float32 UV coordinates (OBJ convention: v = 0 at the image bottom)

The pickles are read the way the reference reads them (``np.load(path, allow_pickle=True)`` of a
pickled dict), but through a restricted unpickler that constructs numpy arrays only (no code runs);
the .pt files with ``torch.load(weights_only=True)``. Arrays are kept as float32 (int64 stay int64).

The layer (the same arithmetic as the reference layer ``NIMBLELayer``):
  shape   betas_real = betas * shape_pm_std + shape_pm_mean;  v = vert + shape_basis^T betas_real
  pose    theta_real = theta * pose_pm_std + pose_pm_mean;   full = [root, pose_mean + pose_basis^T theta_real]
          (20 bones x axis-angle)
  joints  J = jreg_bone v[bones] (25 rest joints); global transforms along NIMBLE's tree, the bone of
          each joint rotating about it (end joints do not rotate)
  skin    v_posed = v + pbs (R_b - I for bones 1..19); linear blend skinning with all_sw
  units   mm -> m (x 0.001)
  MANO    778 vertices = mean over R of the barycentric regressions on the skin
  texture maps = clamp(mean + basis[:, :Ct] (alpha * std), 0, 1), per map; alpha normalised by the
          PCA std like shape and pose (the texture space has no pm_mean)
Only the skin is posed (the bones and muscles are not needed by handrecon), the joint regressor's
dependence on shape is folded into a per-joint shape basis (exact: both are linear), and the
reference's optional collision handling between skin and muscles is not run (HiFiHR trains with
it off: it is not differentiable and needs trimesh ray casts).

Keypoints: ``joint_regressor=jreg_mano`` (default): NIMBLE's own 21-row regressor on the skin,
rows in the "MANO interleaved" order that the NIMBLE fork of the reference feeds through its
MANO-to-FreiHAND mapping (:data:`handrecon.joints.MANO_INTERLEAVED_TO_CANONICAL`);
``joint_regressor=mano``: MANO's J_regressor and fingertip vertices on the 778 MANO-topology vertices
(what that fork's layer returns), which needs ``mano_path`` (a MANO_RIGHT.pkl or its folder). A MANO
file also gives the MANO-topology output its faces (exports of the 778-vertex mesh).
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np
import torch
from torch import nn

from handrecon.geometry.rotation import axis_angle_to_matrix
from handrecon.joints import (
    MANO_INTERLEAVED_TO_CANONICAL,
    MANO_PARENTS,
    MANO_TO_CANONICAL,
    NIMBLE_BONE_OF_MANO_JOINT,
    NIMBLE_JOINT_BONE,
    NIMBLE_JOINT_OF_MANO_JOINT,
    NIMBLE_PARENTS,
)
from handrecon.models.hand_model import MANO_NUM_VERTS, MANO_TIP_VERTEX_IDS, HandOutput
from handrecon.models.mano_io import RestrictedUnpickler

NIMBLE_URL = "https://liyuwei.cc/proj/nimble"
MODEL_FILE = "NIMBLE_DICT_9137.pkl"
TEX_FILE = "NIMBLE_TEX_DICT.pkl"
VREG_FILE = "NIMBLE_MANO_VREG.pkl"
FACES_UVS_FILE = "faces_uvs.pt"
VERTS_UVS_FILE = "verts_uvs.pt"
ASSET_FILES = (MODEL_FILE, TEX_FILE, VREG_FILE, FACES_UVS_FILE, VERTS_UVS_FILE)
MODEL_KEYS = ("vert", "bone_v_sep", "skin_v_sep", "skin_f", "all_sw", "all_pbs", "jreg_bone", "jreg_mano",
              "shape_basis", "shape_pm_mean", "shape_pm_std", "pose_basis", "pose_mean", "pose_pm_mean", "pose_pm_std")
TEX_MAPS = ("diffuse", "normal", "spec")
NUM_BONES = 20
NUM_JOINTS_NIMBLE = 25
MM = 1e-3  # NIMBLE's unit (mm) in metres


class NIMBLEFilesNotFound(FileNotFoundError):
    """NIMBLE's asset files are missing."""


def nimble_missing_message(folder, missing: list[str]) -> str:
    return (
        f"NIMBLE asset files not found in {folder}: {', '.join(missing)}\n"
        "NIMBLE (Li et al., SIGGRAPH 2022) is distributed by its authors on request "
        f"({NIMBLE_URL}); handrecon cannot ship it. Put {', '.join(ASSET_FILES)} in one folder and pass "
        "`hand_model=nimble hand_model.path=/that/folder`."
    )


class _NimbleUnpickler(RestrictedUnpickler):
    """numpy arrays, dicts, lists and numbers only (the layout np.load(allow_pickle=True) returns)."""

    def find_class(self, module: str, name: str):
        if module.startswith("chumpy") or module.startswith("scipy"):
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a NIMBLE pickle")
        try:
            return super().find_class(module, name)
        except pickle.UnpicklingError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name} from a NIMBLE pickle: only numpy arrays, dicts, lists and "
                "numbers are allowed") from None


def load_nimble_pickle(path: str | os.PathLike) -> dict:
    """A NIMBLE .pkl -> its dict (numpy arrays, ints, nested dicts), without running code."""
    path = Path(path)
    try:
        data = _NimbleUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as err:
        raise pickle.UnpicklingError(f"{path}: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a pickled dict of arrays, got {type(data).__name__}")
    return data


def _arr(d: dict, key: str, file, ndim: int | None = None) -> np.ndarray:
    if key not in d:
        raise ValueError(f"{file}: missing key {key!r}")
    a = np.asarray(d[key])
    a = a.squeeze() if ndim is None or a.ndim > ndim else a
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{file}: {key!r} must have {ndim} dimensions (after squeezing), got shape {a.shape}")
    return a


def _f32(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float32))


def _load_pt(path: Path, ndim: int, dtype: torch.dtype) -> torch.Tensor:
    t = torch.load(path, map_location="cpu", weights_only=True)
    if not torch.is_tensor(t):
        raise ValueError(f"{path}: expected a tensor, got {type(t).__name__}")
    t = t.squeeze(0) if t.dim() == ndim + 1 else t
    if t.dim() != ndim:
        raise ValueError(f"{path}: expected a (1, N, {3 if ndim == 2 and dtype == torch.long else 2}) tensor, "
                         f"got shape {tuple(t.shape)}")
    return t.to(dtype)


def resolve_nimble_folder(path) -> Path:
    if path is None or str(path) == "" or str(path) == "???":
        raise NIMBLEFilesNotFound(nimble_missing_message("(hand_model.path not set)", list(ASSET_FILES)))
    p = Path(os.path.expanduser(str(path)))
    if p.is_file():
        p = p.parent
    missing = [f for f in ASSET_FILES if not (p / f).is_file()]
    if missing:
        raise NIMBLEFilesNotFound(nimble_missing_message(p, missing))
    return p


class NIMBLEModel(nn.Module):
    """The NIMBLE layer (see the module doc). Same interface as :class:`~handrecon.models.hand_model.HandModel`
    plus a texture space.

    forward(hand_pose (B, pose_dim), betas (B, num_betas), global_orient (B, 3) | None, transl | None)
    -> :class:`HandOutput` with ``verts`` the skin (B, num_verts, 3) m, ``mano_verts`` (B, 778, 3),
    ``joints`` (B, 21, 3) canonical order, ``local_pose`` (B, 15, 3) the bones at MANO's 15 finger
    joints (MANO order), ``full_pose`` (B, 60) the 20 bones' axis-angles.
    ``texture(alpha (B, tex_dim))`` -> (B, T, T, 3) RGB diffuse albedo in [0, 1];
    ``texture_maps(alpha)`` -> {"diffuse", "normal", "spec"} each (B, T, T, 3) RGB.
    """

    def __init__(self, path=None, side: str = "right", shape_ncomp: int = 20, pose_ncomp: int = 30,
                 tex_ncomp: int = 10, joint_regressor: str = "jreg_mano", mano_path=None,
                 maps: tuple[str, ...] | list[str] = TEX_MAPS) -> None:
        super().__init__()
        if side != "right":
            raise ValueError("hand_model=nimble: NIMBLE is a right hand (hand_model.side=right); a left hand in "
                             "task=predict is handled by hand=left, which mirrors the image")
        if joint_regressor not in ("jreg_mano", "mano"):
            raise ValueError(f"hand_model.joint_regressor={joint_regressor!r}: expected jreg_mano or mano")
        maps = tuple(maps)
        if "diffuse" not in maps or not set(maps) <= set(TEX_MAPS):
            raise ValueError(f"hand_model.maps={list(maps)}: a subset of {list(TEX_MAPS)} with 'diffuse'")
        folder = resolve_nimble_folder(path)
        self.source = str(folder)
        self.side = side
        self.joint_regressor = joint_regressor
        #: the bones' axis-angles are in NIMBLE's rest frame, not MANO's: the reference's pose-prior table
        #: (MANO axis-angle bounds) does not apply to them (the training module leaves that term at 0)
        self.mano_pose_frame = False
        mf = folder / MODEL_FILE
        pm = load_nimble_pickle(mf)
        for k in MODEL_KEYS:
            if k not in pm:
                raise ValueError(f"{mf}: missing key {k!r} (a NIMBLE model dict has {list(MODEL_KEYS)})")
        vert = _arr(pm, "vert", mf, 2).astype(np.float64)
        N = vert.shape[0]
        bsep, ssep = int(np.asarray(pm["bone_v_sep"])), int(np.asarray(pm["skin_v_sep"]))
        if not 0 < bsep <= ssep < N or vert.shape[1] != 3:
            raise ValueError(f"{mf}: 'vert' {vert.shape} with bone_v_sep={bsep}, skin_v_sep={ssep}: expected "
                             "0 < bone_v_sep <= skin_v_sep < number of vertices")
        V = N - ssep
        skin_f = _arr(pm, "skin_f", mf, 2)
        if not np.issubdtype(skin_f.dtype, np.integer) or skin_f.shape[1] != 3 or skin_f.min() < 0 or skin_f.max() >= V:
            raise ValueError(f"{mf}: 'skin_f' must be (F, 3) integer indices into the {V} skin vertices, got "
                             f"{skin_f.dtype} {skin_f.shape}")
        sw = _arr(pm, "all_sw", mf, 2).reshape(N, -1)
        pbs = _arr(pm, "all_pbs", mf, 3)
        jreg_bone = _arr(pm, "jreg_bone", mf, 2)
        jreg_mano = _arr(pm, "jreg_mano", mf, 2)
        sb = _arr(pm, "shape_basis", mf, 2).astype(np.float64)
        s_std, s_mean = _arr(pm, "shape_pm_std", mf, 1), _arr(pm, "shape_pm_mean", mf, 1)
        pb = _arr(pm, "pose_basis", mf, 2)
        p_mean, pp_std, pp_mean = _arr(pm, "pose_mean", mf, 1), _arr(pm, "pose_pm_std", mf, 1), _arr(pm, "pose_pm_mean", mf, 1)
        shapes = {"all_sw": (sw.shape, (N, NUM_JOINTS_NIMBLE)), "all_pbs": (pbs.shape, (N, 3, 9 * (NUM_BONES - 1))),
                  "jreg_bone": (jreg_bone.shape, (NUM_JOINTS_NIMBLE, bsep)), "jreg_mano": (jreg_mano.shape, (21, V)),
                  "pose_mean": (p_mean.shape, (3 * (NUM_BONES - 1),))}
        for k, (got, want) in shapes.items():
            if tuple(got) != want:
                raise ValueError(f"{mf}: {k!r} has shape {tuple(got)}, expected {want}")
        if sb.shape[1] != 3 * N or not (s_std.shape == s_mean.shape == (sb.shape[0],)):
            raise ValueError(f"{mf}: 'shape_basis' {sb.shape} must be (Cs, 3 x {N}) with shape_pm_std/mean (Cs,)")
        if pb.shape[1] != 3 * (NUM_BONES - 1) or not (pp_std.shape == pp_mean.shape == (pb.shape[0],)):
            raise ValueError(f"{mf}: 'pose_basis' {pb.shape} must be (Cp, 57) with pose_pm_std/mean (Cp,)")
        for name, n, have in (("shape", shape_ncomp, sb.shape[0]), ("pose", pose_ncomp, pb.shape[0])):
            if not 1 <= int(n) <= have:
                raise ValueError(f"hand_model.{name}_ncomp={n}: the model file has {have} {name} components")
        self.num_betas, self.pose_dim, self.num_verts = int(shape_ncomp), int(pose_ncomp), V
        cs, cp = self.num_betas, self.pose_dim
        sb3 = sb[:cs].reshape(cs, N, 3)

        buf = lambda name, t: self.register_buffer(name, t, persistent=False)  # noqa: E731 - file data, not state
        buf("v_template", _f32(vert[ssep:]))  # (V, 3) mm
        buf("shapedirs", _f32(sb3[:, ssep:]))  # (Cs, V, 3) mm per unit of the real coefficient
        buf("shape_std", _f32(s_std[:cs]))
        buf("shape_mean", _f32(s_mean[:cs]))
        jb = jreg_bone.astype(np.float64)
        buf("joints_template", _f32(jb @ vert[:bsep]))  # (25, 3)
        buf("joints_shapedirs", _f32(np.einsum("jn,cnk->cjk", jb, sb3[:, :bsep])))  # (Cs, 25, 3)
        buf("weights", _f32(sw[ssep:]))  # (V, 25)
        buf("posedirs", _f32(pbs[ssep:].reshape(V * 3, -1)))  # (3V, 171)
        buf("pose_components", _f32(pb[:cp]))  # (Cp, 57)
        buf("pose_offset", _f32(p_mean))
        buf("pose_std", _f32(pp_std[:cp]))
        buf("pose_pm_mean", _f32(pp_mean[:cp]))
        buf("jreg_mano", _f32(jreg_mano))  # (21, V)
        buf("faces", torch.as_tensor(skin_f.astype(np.int64)))
        buf("parents", torch.as_tensor(NIMBLE_PARENTS[1:], dtype=torch.long))
        buf("joint_bone", torch.as_tensor(NIMBLE_JOINT_BONE, dtype=torch.long))

        # the MANO-topology regression
        vf = folder / VREG_FILE
        vreg = load_nimble_pickle(vf)
        fidx = np.asarray(_arr(vreg, "lmk_faces_idx", vf))
        bary = np.asarray(_arr(vreg, "lmk_bary_coords", vf))
        fidx = fidx.reshape(-1, fidx.shape[-1])
        bary = bary.reshape(-1, *bary.shape[-2:])
        if fidx.shape[0] != bary.shape[0] or bary.shape[1:] != (fidx.shape[1], 3) or not np.issubdtype(fidx.dtype, np.integer):
            raise ValueError(f"{vf}: 'lmk_faces_idx' (R, M) int and 'lmk_bary_coords' (R, M, 3) expected, got "
                             f"{fidx.dtype} {fidx.shape} and {bary.shape}")
        if fidx.min() < 0 or fidx.max() >= len(skin_f):
            raise ValueError(f"{vf}: 'lmk_faces_idx' must index the {len(skin_f)} skin faces")
        self.num_mano_verts = int(fidx.shape[1])
        buf("vreg_verts", torch.as_tensor(skin_f.astype(np.int64)[fidx]))  # (R, M, 3) skin vertex ids
        buf("vreg_bary", _f32(bary))

        # the texture space
        tf = folder / TEX_FILE
        tex = load_nimble_pickle(tf)
        ct = int(tex_ncomp)
        self.tex_dim = ct
        self.maps = maps
        size = None
        for m in maps:
            if not isinstance(tex.get(m), dict):
                raise ValueError(f"{tf}: missing the {m!r} dict (keys 'basis', 'mean', 'std')")
            basis = _arr(tex[m], "basis", f"{tf}[{m!r}]", 2)
            mean = _arr(tex[m], "mean", f"{tf}[{m!r}]", 1)
            std = _arr(tex[m], "std", f"{tf}[{m!r}]", 1)
            T = int(round((mean.shape[0] / 3) ** 0.5))
            if 3 * T * T != mean.shape[0] or basis.shape[0] != mean.shape[0] or not 1 <= ct <= min(basis.shape[1], len(std)):
                raise ValueError(f"{tf}[{m!r}]: 'basis' {basis.shape}, 'mean' {mean.shape}, 'std' {std.shape}: expected "
                                 f"(3 T T, Ct), (3 T T,), (Ct,) with Ct >= tex_ncomp={ct}")
            if size is not None and T != size:
                raise ValueError(f"{tf}: the maps have different sizes ({size} and {T})")
            size = T
            # kept as (Ct, T T 3) rows in R, G, B order (the file's rows are B, G, R per texel): one addmm
            # per map, no per-call transposes or channel flips
            rgb = np.asarray(basis[:, :ct], np.float32).reshape(T, T, 3, ct)[:, :, ::-1]
            buf(f"tex_{m}_basis", torch.as_tensor(np.ascontiguousarray(rgb.reshape(-1, ct).T)))
            buf(f"tex_{m}_mean", _f32(np.asarray(mean).reshape(T, T, 3)[:, :, ::-1].reshape(-1)))
            buf(f"tex_{m}_std", _f32(std[:ct]))
        self.texture_size = int(size)
        buf("faces_uvs", _load_pt(folder / FACES_UVS_FILE, 2, torch.long))  # (F, 3)
        buf("verts_uvs", _load_pt(folder / VERTS_UVS_FILE, 2, torch.float32))  # (Vt, 2)
        if self.faces_uvs.shape != self.faces.shape or int(self.faces_uvs.min()) < 0 or \
                int(self.faces_uvs.max()) >= self.verts_uvs.shape[0] or self.verts_uvs.shape[-1] != 2:
            raise ValueError(f"{folder}: faces_uvs {tuple(self.faces_uvs.shape)} must match skin_f "
                             f"{tuple(self.faces.shape)} and index verts_uvs {tuple(self.verts_uvs.shape)} (Vt, 2)")

        # MANO: faces of the 778-vertex output and (joint_regressor=mano) its joint regressor
        self.mano_source = None
        mano_faces = None
        if mano_path:
            from handrecon.models.hand_model import load_hand_data

            data, self.mano_source = load_hand_data(mano_path, "right")
            if np.asarray(data["v_template"]).shape[0] != self.num_mano_verts:
                raise ValueError(f"hand_model.mano_path={mano_path}: {np.asarray(data['v_template']).shape[0]} vertices, "
                                 f"but {VREG_FILE} regresses {self.num_mano_verts}")
            mano_faces = torch.as_tensor(np.asarray(data["f"]).astype(np.int64))
            import scipy.sparse

            reg = data["J_regressor"]
            reg = reg.toarray() if scipy.sparse.issparse(reg) else np.asarray(reg)
            buf("mano_jreg", _f32(reg))  # (16, 778)
        elif joint_regressor == "mano":
            raise ValueError("hand_model.joint_regressor=mano needs hand_model.mano_path (MANO_RIGHT.pkl or its folder)")
        if joint_regressor == "mano" and self.num_mano_verts != MANO_NUM_VERTS:
            raise ValueError(f"joint_regressor=mano needs the {MANO_NUM_VERTS}-vertex MANO output, got {self.num_mano_verts}")
        buf("mano_faces", mano_faces)
        buf("interleaved_to_canonical", torch.as_tensor(MANO_INTERLEAVED_TO_CANONICAL))
        buf("mano_to_canonical", torch.as_tensor(MANO_TO_CANONICAL))
        buf("mano_tip_ids", torch.as_tensor(MANO_TIP_VERTEX_IDS, dtype=torch.long))
        buf("bone_of_mano_joint", torch.as_tensor(NIMBLE_BONE_OF_MANO_JOINT))

        from handrecon.models.anatomy import joint_frames

        with torch.no_grad():
            rest = self._shaped(torch.zeros(1, cs))[1][0] * MM  # (25, 3) m, mean shape
        template16 = rest[torch.as_tensor(NIMBLE_JOINT_OF_MANO_JOINT)]
        buf("template_joints", template16)
        buf("joint_frames", joint_frames(template16, MANO_PARENTS, "right"))

    # ------------------------------------------------------------------ pieces
    def _shaped(self, betas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """betas (B, Cs) normalised -> skin vertices (B, V, 3) and rest joints (B, 25, 3), mm."""
        real = betas * self.shape_std + self.shape_mean
        v = self.v_template + torch.einsum("bc,cvk->bvk", real, self.shapedirs)
        j = self.joints_template + torch.einsum("bc,cjk->bjk", real, self.joints_shapedirs)
        return v, j

    def full_pose(self, hand_pose: torch.Tensor, global_orient: torch.Tensor | None = None) -> torch.Tensor:
        """hand_pose (B, Cp) normalised -> (B, 20, 3) axis-angle of the 20 bones (bone 0: global_orient)."""
        B = hand_pose.shape[0]
        real = hand_pose * self.pose_std + self.pose_pm_mean
        fingers = self.pose_offset + real @ self.pose_components  # (B, 57)
        root = hand_pose.new_zeros(B, 3) if global_orient is None else global_orient
        return torch.cat([root, fingers], 1).view(B, NUM_BONES, 3)

    def skin(self, v: torch.Tensor, joints: torch.Tensor, pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Skinning. v (B, V, 3) and joints (B, 25, 3) rest, pose (B, 20, 3) -> posed v, posed joints (mm)."""
        B = v.shape[0]
        R = axis_angle_to_matrix(pose)  # (B, 20, 3, 3)
        eye = torch.eye(3, dtype=v.dtype, device=v.device)
        feat = (R[:, 1:] - eye).reshape(B, -1)  # (B, 171)
        v = v + (feat @ self.posedirs.T).view(B, -1, 3)
        Rj = torch.cat([R, eye.expand(B, 1, 3, 3)], 1)[:, self.joint_bone]  # (B, 25, 3, 3); bone -1 -> identity
        rel = joints.clone()
        rel[:, 1:] = joints[:, 1:] - joints[:, self.parents]
        rot, trans = [Rj[:, 0]], [joints[:, 0]]
        for i in range(1, NUM_JOINTS_NIMBLE):
            p = NIMBLE_PARENTS[i]
            rot.append(rot[p] @ Rj[:, i])
            trans.append(trans[p] + (rot[p] @ rel[:, i, :, None])[..., 0])
        Gr, Gt = torch.stack(rot, 1), torch.stack(trans, 1)  # (B, 25, 3, 3), (B, 25, 3)
        At = Gt - (Gr @ joints[..., None])[..., 0]  # translation of the skinning transforms
        Mr = torch.einsum("vj,bjkl->bvkl", self.weights, Gr)
        Mt = torch.einsum("vj,bjk->bvk", self.weights, At)
        posed = (Mr @ v[..., None])[..., 0] + Mt
        return posed, Gt

    def to_mano(self, skin: torch.Tensor) -> torch.Tensor:
        """skin (B, V, 3) -> (B, 778, 3): the mean of the barycentric regressions."""
        corners = skin[:, self.vreg_verts]  # (B, R, M, 3, 3)
        return torch.einsum("brmkc,rmk->bmc", corners, self.vreg_bary) / self.vreg_bary.shape[0]

    def texture_maps(self, alpha: torch.Tensor, maps: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
        """alpha (B, tex_dim) normalised -> {map: (B, T, T, 3) RGB in [0, 1]}."""
        if alpha.dim() != 2 or alpha.shape[1] != self.tex_dim:
            raise ValueError(f"NIMBLE texture: coefficients must be (B, {self.tex_dim}), got {tuple(alpha.shape)}")
        T = self.texture_size
        out = {}
        for m in maps or self.maps:
            basis, mean, std = (getattr(self, f"tex_{m}_{k}") for k in ("basis", "mean", "std"))
            x = torch.addmm(mean, alpha.to(basis.dtype) * std, basis)  # (B, T T 3), R, G, B
            out[m] = x.clamp(0.0, 1.0).view(-1, T, T, 3)
        return out

    def texture(self, alpha: torch.Tensor) -> torch.Tensor:
        """alpha (B, tex_dim) -> the diffuse albedo map (B, T, T, 3) RGB in [0, 1]."""
        return self.texture_maps(alpha, ("diffuse",))["diffuse"]

    # ------------------------------------------------------------------ forward
    def forward(self, hand_pose: torch.Tensor, betas: torch.Tensor, global_orient: torch.Tensor | None = None,
                transl: torch.Tensor | None = None) -> HandOutput:
        if hand_pose.dim() != 2 or hand_pose.shape[1] != self.pose_dim:
            raise ValueError(f"NIMBLE: hand_pose must be (B, {self.pose_dim}), got {tuple(hand_pose.shape)}")
        B = hand_pose.shape[0]
        if betas.shape != (B, self.num_betas):
            raise ValueError(f"NIMBLE: betas must be ({B}, {self.num_betas}), got {tuple(betas.shape)}")
        if global_orient is not None and global_orient.shape != (B, 3):
            raise ValueError(f"NIMBLE: global_orient must be ({B}, 3), got {tuple(global_orient.shape)}")
        if transl is not None and transl.shape != (B, 3):
            raise ValueError(f"NIMBLE: transl must be ({B}, 3), got {tuple(transl.shape)}")
        dt = self.v_template.dtype
        hand_pose, betas = hand_pose.to(dt), betas.to(dt)
        pose = self.full_pose(hand_pose, None if global_orient is None else global_orient.to(dt))
        v, j = self._shaped(betas)
        verts, _ = self.skin(v, j, pose)
        verts = verts * MM
        if transl is not None:
            verts = verts + transl.to(dt)[:, None]
        mano = self.to_mano(verts)
        if self.joint_regressor == "mano":
            joints = torch.cat([self.mano_jreg @ mano, mano[:, self.mano_tip_ids]], 1)[:, self.mano_to_canonical]
        else:
            joints = (self.jreg_mano @ verts)[:, self.interleaved_to_canonical]
        return HandOutput(verts=verts, joints=joints, local_pose=pose[:, self.bone_of_mano_joint],
                          full_pose=pose.reshape(B, -1), mano_verts=mano)

    def mean_output(self, batch_size: int = 1) -> HandOutput:
        z = self.v_template
        return self(z.new_zeros(batch_size, self.pose_dim), z.new_zeros(batch_size, self.num_betas))

    def extra_repr(self) -> str:
        return (f"source={self.source}, num_verts={self.num_verts}, pose_dim={self.pose_dim}, num_betas={self.num_betas}, "
                f"tex_dim={self.tex_dim}, texture_size={self.texture_size}, joint_regressor={self.joint_regressor}")
