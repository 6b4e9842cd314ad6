"""handrecon.models.openhand: the procedurally generated open hand model and its shipped asset."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse
import torch
import trimesh

from handrecon.joints import MANO_PARENTS, MANO_TO_CANONICAL
from handrecon.models import anatomy, openhand
from handrecon.models.mano_io import load_mano_pickle


@pytest.fixture(scope="module")
def shipped():
    return load_mano_pickle(openhand.ASSET_PATH)


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    out = tmp_path_factory.mktemp("openhand") / "OPENHAND_RIGHT.pkl"
    openhand.main(["--out", str(out)])  # the command line that regenerates the asset
    return load_mano_pickle(out)


def test_regenerating_gives_the_shipped_asset(shipped, regenerated):
    assert set(shipped) == set(regenerated)
    assert shipped["openhand_version"] == openhand.OPENHAND_VERSION
    for key, a in shipped.items():
        b = regenerated[key]
        if key == "hands_components":  # eigenvectors: compare up to sign, and the spanned covariance
            var = shipped["hands_pca_variance"]
            cov_a, cov_b = a.T @ np.diag(var) @ a, b.T @ np.diag(var) @ b
            np.testing.assert_allclose(cov_a, cov_b, atol=1e-6)
            gap = np.diff(var[::-1])[::-1] / var[0]  # separated leading directions match individually
            lead = int(np.argmax(gap < 1e-3)) if np.any(gap < 1e-3) else len(var)
            np.testing.assert_allclose(np.abs((a[:lead] * b[:lead]).sum(1)), 1.0, atol=1e-6)
        elif scipy.sparse.issparse(a):
            np.testing.assert_allclose(a.toarray(), b.toarray(), atol=1e-7)
        elif isinstance(a, np.ndarray) and a.dtype.kind in "fiu":
            atol = 1e-4 if a.dtype == np.float16 else 1e-7  # posedirs are stored as float16
            np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), atol=atol, rtol=1e-5)
        else:
            assert a == b, key


def test_the_asset_is_small():
    assert openhand.ASSET_PATH.stat().st_size < 3_000_000
    assert (openhand.ASSET_PATH.parent / "LICENSE.txt").is_file()


def test_mesh_is_a_closed_outward_surface(shipped):
    v, f = shipped["v_template"], shipped["f"].astype(np.int64)
    assert 700 <= len(v) <= 3000 and f.min() == 0 and f.max() == len(v) - 1
    mesh = trimesh.Trimesh(v, f, process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.volume > 0 and mesh.euler_number == 2  # outward normals, one genus-0 surface
    assert 2.0e-4 < mesh.volume < 6.0e-4  # an adult hand with a wrist stub: 200..600 cm^3


def test_mano_layout_rig(shipped):
    V = len(shipped["v_template"])
    reg = shipped["J_regressor"].toarray()
    assert reg.shape == (16, V) and reg.min() >= 0 and np.allclose(reg.sum(1), 1)
    w = shipped["weights"]
    assert w.shape == (V, 16) and w.min() >= 0 and np.allclose(w.sum(1), 1)
    kt = shipped["kintree_table"]
    assert kt.shape == (2, 16) and kt[0, 0] == 4294967295 and tuple(kt[0, 1:]) == MANO_PARENTS[1:]
    np.testing.assert_allclose(shipped["J"], reg @ shipped["v_template"], atol=1e-12)
    assert shipped["shapedirs"].shape == (V, 3, 10) and shipped["posedirs"].shape == (V, 3, 135)
    # each finger segment's vertices are driven mostly by the joint that moves that segment
    J = shipped["J"]
    for j in range(1, 16):
        near = np.linalg.norm(shipped["v_template"] - J[j], axis=1) < 0.004
        if near.any():
            assert np.isin(w[near].argmax(1), [j, MANO_PARENTS[j]]).all()


def test_proportions_and_axes(shipped):
    v, reg = shipped["v_template"], shipped["J_regressor"].toarray()
    joints = np.concatenate([reg @ v, v[shipped["tip_vertex_ids"]]])[MANO_TO_CANONICAL]  # canonical 21
    hand_length = np.linalg.norm(joints[12] - joints[0])
    assert 0.18 <= hand_length <= 0.19  # wrist joint to middle fingertip
    assert np.linalg.norm(joints[10] - joints[9]) == pytest.approx(0.0282, abs=0.001)  # method's mscale bone
    finger = [np.linalg.norm(joints[t] - joints[t - 3]) for t in (8, 12, 16, 20)]  # knuckle to tip
    assert finger[1] == max(finger) and finger[3] == min(finger)  # middle longest, little shortest
    # MANO's axes: fingers along -x, thumb on +z, palm facing -y
    assert joints[12, 0] < joints[0, 0] - 0.15
    assert joints[4, 2] > joints[8, 2] > joints[12, 2] > joints[16, 2] > joints[20, 2]
    palm = np.cross(joints[5] - joints[0], joints[17] - joints[0])
    assert palm[1] < -0.9 * np.linalg.norm(palm)


def test_tip_vertices_are_the_fingertips(shipped):
    v, reg, tips = shipped["v_template"], shipped["J_regressor"].toarray(), shipped["tip_vertex_ids"]
    J = reg @ v
    for tip, (j2, j3) in zip(tips, ((14, 15), (2, 3), (5, 6), (11, 12), (8, 9))):  # thumb, index, ..., little
        d = (J[j3] - J[j2]) / np.linalg.norm(J[j3] - J[j2])
        own = shipped["weights"].argmax(1) == j3  # the vertices of the finger's last segment
        assert own[tip] and (v[tip] - J[j3]) @ d == pytest.approx(((v[own] - J[j3]) @ d).max(), abs=1e-9)


def test_shape_space(shipped):
    S = shipped["shapedirs"].reshape(-1, 10)
    gram = S.T @ S
    off = gram - np.diag(np.diag(gram))
    assert np.abs(off).max() < 1e-8 * np.diag(gram).max()  # orthogonal components
    # component 0 is a change of size about the wrist joint: 6 % per unit
    scale = 0.06 * (shipped["v_template"] - shipped["J"][0])
    s0 = shipped["shapedirs"][..., 0]
    assert np.corrcoef(s0.ravel(), scale.ravel())[0, 1] > 0.999
    assert np.abs(s0 - scale).max() < 1e-4
    rms_mm = np.sqrt((S**2).sum(0) / len(shipped["v_template"])) * 1000
    assert (rms_mm > 0.3).all()  # every component moves the surface
    assert len(shipped["shape_component_names"]) == 10


def test_pose_space(shipped):
    C = shipped["hands_components"]
    assert C.shape == (45, 45) and np.allclose(C @ C.T, np.eye(45), atol=1e-10)
    var = shipped["hands_pca_variance"]
    assert np.all(np.diff(var) <= 1e-12) and var[:30].sum() / var.sum() > 0.95
    frames = anatomy.joint_frames(torch.as_tensor(shipped["J"]), MANO_PARENTS, "right")
    mean = torch.as_tensor(shipped["hands_mean"]).view(1, 15, 3)
    assert torch.allclose(mean[0], anatomy.relaxed_pose(frames), atol=1e-9)
    assert float(anatomy.pose_violation(mean).max()) == 0.0  # the mean costs 0 under the reference's prior
    # natural poses are represented well by 30 coefficients
    poses = anatomy.sample_natural_pose(500, frames, torch.Generator().manual_seed(9)).reshape(500, 45).numpy()
    d = poses - shipped["hands_mean"]
    resid = d - (d @ C[:30].T) @ C[:30]
    assert np.sqrt((resid**2).sum(1)).mean() < 0.1 * np.sqrt((d**2).sum(1)).mean()


def test_pose_correctives_move_skinned_vertices_onto_the_ideal_posed_surface(shipped):
    from handrecon.models.hand_model import HandModel

    D = openhand.design()
    D = dataclasses.replace(D, joints=openhand._to_design_frame(shipped["J"]))
    x = openhand._to_design_frame(shipped["v_template"])
    frames = anatomy.joint_frames(torch.as_tensor(shipped["J"]), MANO_PARENTS, "right")
    pose = anatomy.sample_natural_pose(6, frames, torch.Generator().manual_seed(31))
    v_lbs, v_ideal, _, _ = openhand.pose_targets(x, shipped["weights"], D, pose.numpy())
    model = HandModel(None, use_pca=False, flat_hand_mean=True)
    with torch.no_grad():
        corrected = model(pose.reshape(6, 45).float(), torch.zeros(6, 10)).verts.double().numpy()
        model.mano.posedirs.zero_()
        plain = model(pose.reshape(6, 45).float(), torch.zeros(6, 10)).verts.double().numpy()
    np.testing.assert_allclose(plain, v_lbs, atol=2e-6)  # our kinematics = smplx's skinning
    err_lbs = np.linalg.norm(v_lbs - v_ideal, axis=-1)
    err_corr = np.linalg.norm(corrected - v_ideal, axis=-1)
    assert np.sqrt((err_corr**2).mean()) < 0.5 * np.sqrt((err_lbs**2).mean())
    assert np.percentile(err_corr, 99) < 0.5 * np.percentile(err_lbs, 99)
    assert np.abs(shipped["posedirs"]).max() > 1e-3


def test_preview_renders_a_picture(tmp_path):
    pytest.importorskip("matplotlib")
    from PIL import Image

    path = openhand.preview(tmp_path / "p.png", views=((15, -65),))
    img = np.asarray(Image.open(path).convert("RGB"), np.float64) / 255
    skin = (img[..., 0] > img[..., 2] + 0.05) & (img.sum(-1) < 2.8)  # shaded skin tones, not the white page
    assert 0.02 < skin.mean() < 0.6
