"""handrecon.models.hand_model: the hand layer (open hand model and MANO-layout files)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from fixtures_mano import make_model, mirror_as_official_left, write_model, write_official_model
from handrecon.joints import FINGERTIPS, MANO_JOINT_TO_CANONICAL
from handrecon.models import hand_model as hm
from handrecon.models.hand_model import MANO_TIP_VERTEX_IDS, HandModel, mirror_model
from handrecon.models.mano_io import load_mano_pickle

TIPS = [91, 19, 37, 73, 55]
MIRROR = torch.tensor([-1.0, 1.0, 1.0])
AA_MIRROR = torch.tensor([1.0, -1.0, -1.0])  # an axial vector under x -> -x


@pytest.fixture(scope="module")
def openhand():
    return HandModel(None, side="right", use_pca=True, num_pca_comps=30)


@pytest.fixture(scope="module")
def asset():
    return load_mano_pickle(hm.default_asset_path())


def _rand(n, *shape, seed=0, scale=1.0):
    return torch.randn((n,) + shape, generator=torch.Generator().manual_seed(seed)) * scale


def test_zero_pose_zero_shape_is_the_template(asset):
    m = HandModel(None, use_pca=False, flat_hand_mean=True)
    out = m(torch.zeros(2, 45), torch.zeros(2, 10))
    v = torch.as_tensor(asset["v_template"], dtype=torch.float32)
    assert torch.allclose(out.verts[1], v, atol=1e-7)
    J = torch.as_tensor(asset["J_regressor"].toarray() @ asset["v_template"], dtype=torch.float32)
    assert torch.allclose(out.joints[0, MANO_JOINT_TO_CANONICAL], J, atol=1e-6)
    assert torch.allclose(out.joints[0, list(FINGERTIPS)], v[m.tip_vertex_ids], atol=1e-7)
    assert torch.allclose(m.template_joints, J, atol=1e-6)


def test_output_shapes_and_pose_bookkeeping(openhand, asset):
    m = openhand
    assert m.pose_dim == 30 and m.num_betas == 10 and m.side == "right"
    assert m.num_verts == len(asset["v_template"]) and tuple(m.faces.shape) == (len(asset["f"]), 3)
    assert m.faces.dtype == torch.long and tuple(m.joint_frames.shape) == (15, 3, 3)
    c, b, rot, t = _rand(4, 30, seed=1, scale=0.5), _rand(4, 10, seed=2), _rand(4, 3, seed=3), _rand(4, 3, seed=4)
    out = m(c, b, rot, t)
    assert out.verts.shape == (4, m.num_verts, 3) and out.joints.shape == (4, 21, 3)
    expect = torch.as_tensor(asset["hands_mean"], dtype=torch.float32) + c @ torch.as_tensor(
        asset["hands_components"][:30], dtype=torch.float32)
    assert torch.allclose(out.full_pose[:, 3:], expect, atol=1e-6)
    assert torch.allclose(out.full_pose[:, :3], rot) and torch.equal(out.local_pose, out.full_pose[:, 3:].view(4, 15, 3))
    no_t = m(c, b, rot)
    assert torch.allclose(out.verts, no_t.verts + t[:, None], atol=1e-6)
    assert torch.allclose(out.joints, no_t.joints + t[:, None], atol=1e-6)
    mean = m.mean_output(2)
    assert torch.allclose(mean.verts, m(torch.zeros(2, 30), torch.zeros(2, 10)).verts)


def test_45_pca_components_equal_the_axis_angle_path():
    pca = HandModel(None, use_pca=True, num_pca_comps=45)
    aa = HandModel(None, use_pca=False)
    c, b = _rand(3, 45, seed=5, scale=0.4), _rand(3, 10, seed=6)
    o1 = pca(c, b)
    o2 = aa(c @ pca.hand_components, b)
    assert torch.allclose(o1.verts, o2.verts, atol=1e-6) and torch.allclose(o1.full_pose, o2.full_pose, atol=1e-6)


def test_left_openhand_is_the_mirror_image_of_the_right(openhand):
    left = HandModel(None, side="left", use_pca=True, num_pca_comps=30)
    c, b, rot, t = _rand(3, 30, seed=7, scale=0.5), _rand(3, 10, seed=8), _rand(3, 3, seed=9), _rand(3, 3, seed=10)
    r = openhand(c, b, rot, t * 0.1)
    lo = left(c, b, rot * AA_MIRROR, t * 0.1 * MIRROR)
    assert torch.allclose(lo.verts, r.verts * MIRROR, atol=1e-6)
    assert torch.allclose(lo.joints, r.joints * MIRROR, atol=1e-6)
    assert torch.allclose(lo.local_pose, r.local_pose * AA_MIRROR, atol=1e-6)
    for model, out in ((openhand, r), (left, lo)):  # both stay closed and outward oriented
        mesh = trimesh.Trimesh(out.verts[0].detach().numpy(), model.faces.numpy(), process=False)
        assert mesh.is_winding_consistent and mesh.volume > 0
    assert torch.allclose(left.joint_frames, openhand.joint_frames * AA_MIRROR, atol=1e-6)


def test_official_left_file_gets_its_shapedirs_fixed(tmp_path):
    right = make_model(120, seed=3)
    write_official_model(right, tmp_path / "MANO_RIGHT.pkl")  # the official files' structure (chumpy Select)
    write_official_model(mirror_as_official_left(right), tmp_path / "MANO_LEFT.pkl")
    mr = HandModel(tmp_path, side="right", use_pca=False, tip_vertex_ids=TIPS)
    ml = HandModel(tmp_path, side="left", use_pca=False, tip_vertex_ids=TIPS)
    p, b = _rand(2, 45, seed=11, scale=0.3), _rand(2, 10, seed=12)
    assert torch.allclose(ml(p * AA_MIRROR.repeat(15), b).verts, mr(p, b).verts * MIRROR, atol=1e-6)


def test_left_mirror_of_a_mano_file(tmp_path):
    data = make_model(120, seed=4)
    f = write_model(data, tmp_path / "MANO_RIGHT.pkl")
    mr = HandModel(f, side="right", use_pca=True, num_pca_comps=20, tip_vertex_ids=TIPS)
    ml = HandModel(f, side="left", use_pca=True, num_pca_comps=20, tip_vertex_ids=TIPS)  # file mirrored
    c, b = _rand(2, 20, seed=13, scale=0.5), _rand(2, 10, seed=14)
    assert torch.allclose(ml(c, b).verts, mr(c, b).verts * MIRROR, atol=1e-6)
    back = mirror_model(mirror_model(data))
    for k in ("v_template", "f", "shapedirs", "posedirs", "hands_components", "hands_mean"):
        np.testing.assert_array_equal(back[k], data[k])


def test_gradients_flow_to_every_input(openhand):
    c = _rand(2, 30, seed=15, scale=0.5).requires_grad_()
    b = _rand(2, 10, seed=16).requires_grad_()
    rot = _rand(2, 3, seed=17).requires_grad_()
    t = torch.zeros(2, 3, requires_grad=True)
    out = openhand(c, b, rot, t)
    (out.verts.square().sum() + out.joints.square().sum()).backward()
    for x in (c, b, rot, t):
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_the_model_file_is_read_once(monkeypatch):
    calls = []
    real = hm.load_mano_pickle
    monkeypatch.setattr(hm, "load_mano_pickle", lambda p: calls.append(p) or real(p))
    m = HandModel(None)
    for _ in range(3):
        m(torch.zeros(1, 30), torch.zeros(1, 10))
    assert len(calls) == 1
    assert len(m.state_dict()) == 0 and len(list(m.parameters())) == 0  # nothing of the model in checkpoints


def test_tip_vertex_ids_default_and_errors(tmp_path):
    f778 = write_model(make_model(778), tmp_path / "MANO_RIGHT.pkl")
    assert HandModel(f778).tip_vertex_ids == list(MANO_TIP_VERTEX_IDS)
    f120 = write_model(make_model(120), tmp_path / "small_RIGHT.pkl")
    with pytest.raises(ValueError, match="tip_vertex_ids"):
        HandModel(f120)
    with pytest.raises(ValueError, match="tip_vertex_ids"):
        HandModel(f120, tip_vertex_ids=[1, 2, 3, 4, 500])


def test_bad_inputs_are_clear_errors(openhand):
    with pytest.raises(ValueError, match="num_pca_comps"):
        HandModel(None, num_pca_comps=46)
    with pytest.raises(ValueError, match="side"):
        HandModel(None, side="middle")
    with pytest.raises(ValueError, match=r"hand_pose must be \(B, 30\)"):
        openhand(torch.zeros(1, 45), torch.zeros(1, 10))
    with pytest.raises(ValueError, match="betas"):
        openhand(torch.zeros(2, 30), torch.zeros(1, 10))
    out = openhand(torch.zeros(1, 30, dtype=torch.float64), torch.zeros(1, 10, dtype=torch.float64))
    assert out.verts.dtype == torch.float32  # inputs are cast to the model's dtype
