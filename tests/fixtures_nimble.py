"""Fake NIMBLE asset files in the exact structure of the real ones (keys, shapes, dtypes, a pickled
dict read with np.load(..., allow_pickle=True) / torch.save'd UV tensors), with small random bases.

The skin is handrecon's open hand model (so that it renders as a hand and its keypoints are
meaningful): its vertices in mm are NIMBLE's skin, its joints give NIMBLE's 25 joints, and 25 "bone
vertices" sit exactly on them (``jreg_bone`` = identity). ``jreg_mano`` holds the open hand model's
joint regressor and fingertip vertices in the "MANO interleaved" row order.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import scipy.sparse
import torch

from handrecon.joints import NIMBLE_BONE_OF_MANO_JOINT, NIMBLE_JOINT_OF_MANO_JOINT
from handrecon.models.hand_model import load_hand_data

N_MUSCLE = 5
SHAPE_COMPS, POSE_COMPS, TEX_COMPS = 24, 32, 12  # more than the layer uses: it must slice
INTERLEAVED_MANO = [0, 1, 2, 3, "index", 4, 5, 6, "middle", 7, 8, 9, "little", 10, 11, 12, "ring", 13, 14, 15, "thumb"]


def nimble_joints_mm(J16: np.ndarray, tips: dict) -> np.ndarray:
    """25 NIMBLE joints from MANO-order joints (m) and tip positions."""
    out = np.zeros((25, 3))
    out[0] = J16[0]
    for m, n in enumerate(NIMBLE_JOINT_OF_MANO_JOINT):
        out[n] = J16[m]
    out[4] = tips["thumb"]
    for base, tip in ((5, "index"), (10, "middle"), (15, "ring"), (20, "little")):
        out[base] = J16[0] + 0.3 * (out[base + 1] - J16[0])  # metacarpal base
        out[base + 4] = tips[tip]
    return out * 1000.0


def write_nimble_assets(folder: Path, *, seed: int = 0, tex_size: int = 8, means: bool = True, n_vreg: int = 3,
                        shape_scale: float = 2.0, pbs_scale: float = 0.05, subdivide: int = 0,
                        maps: tuple[str, ...] = ("diffuse", "normal", "spec")) -> Path:
    """Write the five NIMBLE asset files into ``folder``; returns it. ``means=False``: zero pose means
    (pose_mean, pose_pm_mean), so zero pose coefficients give NIMBLE's rest pose exactly (the shape's
    pm_mean is always non-zero: betas = -shape_pm_mean / shape_pm_std give the template)."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data, _ = load_hand_data(None, "right")
    v = np.asarray(data["v_template"], np.float64)
    f = np.asarray(data["f"]).astype(np.int64)
    V = len(v)
    reg = data["J_regressor"]
    reg = reg.toarray() if scipy.sparse.issparse(reg) else np.asarray(reg)
    tip_ids = [int(i) for i in np.asarray(data["tip_vertex_ids"]).ravel()]  # thumb, index, middle, ring, little
    tips = dict(zip(("thumb", "index", "middle", "ring", "little"), v[tip_ids]))
    J16 = reg @ v
    w16 = np.asarray(data["weights"], np.float64)
    for _ in range(subdivide):  # NIMBLE-sized skins for benchmarks: midpoints appended, weights interpolated
        import trimesh

        v, f, attr = trimesh.remesh.subdivide(v, f, vertex_attributes={"w": w16})
        w16 = attr["w"]
        reg = np.concatenate([reg, np.zeros((reg.shape[0], len(v) - reg.shape[1]))], 1)
    V = len(v)
    joints = nimble_joints_mm(J16, tips)
    nb = 25
    N = nb + N_MUSCLE + V
    vert = np.concatenate([joints, rng.normal(size=(N_MUSCLE, 3)) * 10 + joints[0], v * 1000.0])
    sw = np.zeros((N, 25))
    sw[np.arange(nb), np.arange(nb)] = 1.0
    sw[nb:nb + N_MUSCLE, 0] = 1.0
    for m, n in enumerate(NIMBLE_JOINT_OF_MANO_JOINT):
        sw[nb + N_MUSCLE:, n] += w16[:, m]
    jreg_mano = np.zeros((21, V))
    tip_of = dict(zip(("thumb", "index", "middle", "ring", "little"), tip_ids))
    for r, m in enumerate(INTERLEAVED_MANO):
        if isinstance(m, str):
            jreg_mano[r, tip_of[m]] = 1.0
        else:
            jreg_mano[r] = reg[m]
    # pose space: the open hand model's PCA, moved onto NIMBLE's bones
    comps = np.asarray(data["hands_components"], np.float64)  # (45, 45) MANO order
    hmean = np.asarray(data["hands_mean"], np.float64)

    def to_bones(x45):
        out = np.zeros(x45.shape[:-1] + (57,))
        for m, b in enumerate(NIMBLE_BONE_OF_MANO_JOINT):
            out[..., 3 * (b - 1):3 * b] = x45[..., 3 * m:3 * m + 3]
        return out

    pose_basis = to_bones(comps[:POSE_COMPS])
    var = np.asarray(data.get("hands_pca_variance", np.ones(45)), np.float64)[:POSE_COMPS]
    pm = {
        "vert": vert[None].astype(np.float32),  # (1, N, 3), as the reference squeezes it
        "face": (f + nb + N_MUSCLE).astype(np.int64),
        "bone_v_sep": nb,
        "skin_v_sep": nb + N_MUSCLE,
        "bone_f": rng.integers(0, nb, size=(8, 3)).astype(np.int64),
        "muscle_f": rng.integers(0, N_MUSCLE, size=(4, 3)).astype(np.int64),
        "skin_f": f,
        "all_sw": sw.astype(np.float32),
        # smooth (so that posed and reshaped skins stay smooth surfaces): pose correctives are an
        # offset per vertex and pose feature that varies linearly over the hand; shape components
        # are affine deformations (mm)
        "all_pbs": (np.einsum("nk,kcp->ncp", np.c_[vert - vert.mean(0), np.full(N, 50.0)] / 50.0,
                              rng.normal(size=(4, 3, 171))) * pbs_scale).astype(np.float32),
        "jreg_mano": jreg_mano.astype(np.float32),
        "jreg_bone": np.eye(nb, dtype=np.float32),
        "shape_basis": (np.einsum("nk,ckd->cnd", np.c_[vert - vert.mean(0), np.full(N, 50.0)] / 50.0,
                                  rng.normal(size=(SHAPE_COMPS, 4, 3))) * shape_scale).reshape(SHAPE_COMPS, 3 * N).astype(np.float32),
        "shape_pm_std": rng.uniform(0.5, 2.0, SHAPE_COMPS).astype(np.float32),
        "shape_pm_mean": (rng.normal(size=SHAPE_COMPS) * 0.3).astype(np.float32),
        "pose_basis": pose_basis.astype(np.float32),
        "pose_mean": (to_bones(hmean) * means).astype(np.float32),
        "pose_pm_std": np.sqrt(var).astype(np.float32),
        "pose_pm_mean": (rng.normal(size=POSE_COMPS) * 0.1 * means).astype(np.float32),
        "skin_v_surface_mask": np.ones(V, dtype=np.int64),
        "skin_v_gd": rng.uniform(0, 60, size=(V, 4)).astype(np.float32),
    }
    with open(folder / "NIMBLE_DICT_9137.pkl", "wb") as fo:
        pickle.dump(pm, fo)
    T = tex_size
    tex = {}
    for name in maps:
        tex[name] = {
            "basis": (rng.normal(size=(3 * T * T, TEX_COMPS)) * 0.05).astype(np.float32),
            "mean": rng.uniform(0.3, 0.7, 3 * T * T).astype(np.float32),
            "std": rng.uniform(0.5, 1.5, TEX_COMPS).astype(np.float32),
        }
    with open(folder / "NIMBLE_TEX_DICT.pkl", "wb") as fo:
        pickle.dump(tex, fo)
    fidx = rng.integers(0, len(f), size=(n_vreg, 778)).astype(np.int64)
    bc = rng.uniform(0.05, 1.0, size=(n_vreg, 778, 3))
    bc = (bc / bc.sum(-1, keepdims=True)).astype(np.float32)
    with open(folder / "NIMBLE_MANO_VREG.pkl", "wb") as fo:
        pickle.dump({"lmk_faces_idx": fidx, "lmk_bary_coords": bc}, fo)
    # UV map: a cylindrical projection about the hand's long axis (x), one UV vertex per skin vertex
    c = v - v.mean(0)
    uv = np.stack([(np.arctan2(c[:, 2], c[:, 1]) / (2 * np.pi)) % 1.0,
                   (c[:, 0] - c[:, 0].min()) / np.ptp(c[:, 0])], -1)
    torch.save(torch.as_tensor(uv, dtype=torch.float32)[None], folder / "verts_uvs.pt")
    torch.save(torch.as_tensor(f)[None], folder / "faces_uvs.pt")
    return folder
