"""handrecon.models.nimble: the NIMBLE layer on fake asset files of the real structure."""

from __future__ import annotations

import csv
import math
import os
import pickle

import numpy as np
import pytest
import torch

from fixtures_nimble import write_nimble_assets
from handrecon.eval.exporters import load_params_json, save_textured_obj
from handrecon.geometry.rotation import axis_angle_to_matrix
from handrecon.models.hand_model import HandModel
from handrecon.models.nimble import ASSET_FILES, MM, NIMBLEFilesNotFound, NIMBLEModel, load_nimble_pickle


@pytest.fixture(scope="module")
def flat_dir(tmp_path_factory):  # zero pose means: zero pose coefficients = NIMBLE's rest pose
    return write_nimble_assets(tmp_path_factory.mktemp("nimble_flat"), means=False)


@pytest.fixture(scope="module")
def mean_dir(tmp_path_factory):
    return write_nimble_assets(tmp_path_factory.mktemp("nimble_mean"), means=True, seed=1)


@pytest.fixture(scope="module")
def flat(flat_dir):
    return NIMBLEModel(flat_dir)


def _raw(folder, name):
    return np.load(folder / name, allow_pickle=True)  # how the reference reads them (our own test file)


def _template_betas(m, B=1):
    return (-m.shape_mean / m.shape_std).expand(B, -1)


def test_rest_pose_equals_the_template(flat, flat_dir):
    pm = _raw(flat_dir, "NIMBLE_DICT_9137.pkl")
    skin = np.asarray(pm["vert"]).squeeze()[pm["skin_v_sep"]:]
    out = flat(torch.zeros(2, 30), _template_betas(flat, 2))
    np.testing.assert_allclose(out.verts[1].numpy(), skin * 1e-3, atol=1e-7)
    # joints: jreg_mano on the skin, rows reordered; the fake skin is the open hand model, whose own
    # joints (flat hand) the interleaved regressor must reproduce in canonical order
    oh = HandModel(flat_hand_mean=True).mean_output(1)
    np.testing.assert_allclose(out.joints[0].numpy(), oh.joints[0].numpy(), atol=1e-6)
    assert out.full_pose.abs().max() == 0


def test_unit_coefficients_move_by_basis_times_std(flat, flat_dir):
    pm = _raw(flat_dir, "NIMBLE_DICT_9137.pkl")
    N = np.asarray(pm["vert"]).squeeze().shape[0]
    ssep = pm["skin_v_sep"]
    b0 = _template_betas(flat)
    base = flat(torch.zeros(1, 30), b0).verts[0].double()
    for k in (0, 7, 19):
        e = torch.zeros(1, 20)
        e[0, k] = 1.0
        moved = flat(torch.zeros(1, 30), b0 + e).verts[0].double()
        want = pm["shape_basis"][k].reshape(N, 3)[ssep:] * pm["shape_pm_std"][k] * 1e-3
        np.testing.assert_allclose((moved - base).numpy(), want, atol=2e-7)
    # pose: a unit coefficient is its basis row times its std (axis-angles of bones 1..19)
    for k in (0, 29):
        e = torch.zeros(1, 30)
        e[0, k] = 1.0
        full = flat.full_pose(e)[0, 1:].reshape(-1).numpy()
        np.testing.assert_allclose(full, pm["pose_basis"][k] * pm["pose_pm_std"][k], rtol=1e-5, atol=1e-6)
    # texture: unit coefficient -> its basis column times its std (B, G, R stored; R, G, B returned)
    tex = _raw(flat_dir, "NIMBLE_TEX_DICT.pkl")["diffuse"]
    T = flat.texture_size
    a = torch.zeros(1, 10)
    t0 = flat.texture(a)[0].numpy()
    np.testing.assert_allclose(t0, tex["mean"].reshape(T, T, 3)[..., ::-1].clip(0, 1), atol=1e-6)
    a[0, 3] = 1.0
    d = flat.texture(a)[0].numpy() - t0
    want = (tex["basis"][:, 3] * tex["std"][3]).reshape(T, T, 3)[..., ::-1]
    np.testing.assert_allclose(d, want, atol=1e-6)  # the fake's maps stay inside [0, 1]


def test_normalised_by_the_pca_std_and_mean(mean_dir):
    m = NIMBLEModel(mean_dir)
    pm = _raw(mean_dir, "NIMBLE_DICT_9137.pkl")
    th = torch.randn(1, 30)
    want = pm["pose_mean"] + ((th.numpy()[0] * pm["pose_pm_std"][:30] + pm["pose_pm_mean"][:30]) @ pm["pose_basis"][:30])
    np.testing.assert_allclose(m.full_pose(th)[0, 1:].reshape(-1).numpy(), want, rtol=1e-5, atol=1e-5)


def test_mano_topology_output_is_the_barycentric_regression(flat, flat_dir):
    vreg = _raw(flat_dir, "NIMBLE_MANO_VREG.pkl")
    pm = _raw(flat_dir, "NIMBLE_DICT_9137.pkl")
    torch.manual_seed(0)
    out = flat(torch.randn(2, 30) * 0.5, torch.randn(2, 20))
    skin = out.verts.double().numpy()
    f = pm["skin_f"]
    R = vreg["lmk_faces_idx"].shape[0]
    want = np.zeros((2, 778, 3))
    for r in range(R):
        for m in range(0, 778, 37):
            tri = skin[:, f[vreg["lmk_faces_idx"][r, m]]]  # (2, 3, 3)
            want[:, m] += np.einsum("bkc,k->bc", tri, vreg["lmk_bary_coords"][r, m]) / R
    np.testing.assert_allclose(out.mano_verts.double().numpy()[:, ::37], want[:, ::37], atol=1e-7)


def test_skinning_rotates_a_finger_about_its_joint(flat):
    m = flat
    m_posedirs = m.posedirs.clone()
    m.posedirs.zero_()  # the hand-worked check is on the linear blend skinning alone
    try:
        v, j = m._shaped(_template_betas(m))
        pose = torch.zeros(1, 20, 3)
        pose[0, 5] = torch.tensor([0.0, 0.0, math.pi / 2])  # bone 5 (index proximal) rotates at joint 6
        R = axis_angle_to_matrix(pose[0, 5])
        posed, pj = m.skin(v, j, pose)
        J6 = j[0, 6]
        for child in (7, 8, 9):
            torch.testing.assert_close(pj[0, child], J6 + R @ (j[0, child] - J6), atol=1e-4, rtol=0)
        for other in (0, 1, 5, 6, 11, 16, 21):
            torch.testing.assert_close(pj[0, other], j[0, other])
        w = m.weights
        moved_rigidly = (w[:, 7:10].sum(1) > 1 - 1e-6).nonzero().squeeze(1)  # skin driven by joints 7-9 only
        still = (w[:, 10:].sum(1) > 1 - 1e-6).nonzero().squeeze(1)  # by the middle, ring and little fingers
        assert len(moved_rigidly) > 5 and len(still) > 5
        torch.testing.assert_close(posed[0, moved_rigidly], J6 + (v[0, moved_rigidly] - J6) @ R.T, atol=1e-3, rtol=0)
        torch.testing.assert_close(posed[0, still], v[0, still])
    finally:
        m.posedirs.copy_(m_posedirs)


def test_batched_gradients_and_global_orient(flat):
    torch.manual_seed(1)
    pose = (torch.randn(3, 30) * 0.5).requires_grad_()
    betas = torch.randn(3, 20).requires_grad_()
    out = flat(pose, betas)
    (out.joints.sum() + out.mano_verts.sum()).backward()
    assert pose.grad.abs().sum() > 0 and betas.grad.abs().sum() > 0
    one = flat(pose[1:2].detach(), betas[1:2].detach())
    torch.testing.assert_close(one.verts[0], out.verts[1].detach(), atol=1e-6, rtol=0)
    rot = torch.tensor([[0.0, 0.0, 0.7]])
    r = flat(pose[:1].detach(), betas[:1].detach(), global_orient=rot)
    root = flat._shaped(betas[:1].detach())[1][0, 0] * MM  # global rotation is about the root joint
    Rm = axis_angle_to_matrix(rot[0])
    unrotated = flat(pose[:1].detach(), betas[:1].detach()).verts[0]
    torch.testing.assert_close(r.verts[0], root + (unrotated - root) @ Rm.T, atol=1e-6, rtol=0)


def test_missing_files_are_named(tmp_path, flat_dir):
    with pytest.raises(NIMBLEFilesNotFound, match="(?s)NIMBLE_DICT_9137.pkl.*on request"):
        NIMBLEModel(tmp_path)
    for f in ASSET_FILES[2:]:
        os.link(flat_dir / f, tmp_path / f)
    with pytest.raises(NIMBLEFilesNotFound) as e:
        NIMBLEModel(tmp_path)
    assert "NIMBLE_DICT_9137.pkl, NIMBLE_TEX_DICT.pkl" in str(e.value) and "faces_uvs.pt" not in str(e.value).split("\n")[0]
    with pytest.raises(NIMBLEFilesNotFound, match="hand_model.path not set"):
        NIMBLEModel(None)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_the_pickles_cannot_run_code(tmp_path, flat_dir):
    p = tmp_path / "NIMBLE_DICT_9137.pkl"
    p.write_bytes(pickle.dumps({"vert": _Evil()}))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load (posix|os|nt).system"):
        load_nimble_pickle(p)
    d = load_nimble_pickle(flat_dir / "NIMBLE_TEX_DICT.pkl")
    assert set(d) == {"diffuse", "normal", "spec"} and d["spec"]["basis"].dtype == np.float32


def test_bad_inputs_are_clear_errors(flat, mean_dir, tmp_path):
    with pytest.raises(ValueError, match="hand_pose must be"):
        flat(torch.zeros(2, 12), torch.zeros(2, 20))
    with pytest.raises(ValueError, match="NIMBLE is a right hand"):
        NIMBLEModel(mean_dir, side="left")
    with pytest.raises(ValueError, match="has 24 shape components"):
        NIMBLEModel(mean_dir, shape_ncomp=25)
    with pytest.raises(ValueError, match="needs hand_model.mano_path"):
        NIMBLEModel(mean_dir, joint_regressor="mano")
    d = write_nimble_assets(tmp_path / "bad", seed=2)
    pm = np.load(d / "NIMBLE_DICT_9137.pkl", allow_pickle=True)
    pm["all_pbs"] = pm["all_pbs"][:, :, :100]
    with open(d / "NIMBLE_DICT_9137.pkl", "wb") as fo:
        pickle.dump(pm, fo)
    with pytest.raises(ValueError, match="'all_pbs' has shape .* expected"):
        NIMBLEModel(d)


# ------------------------------------------------------------------ in the network and the stages


@pytest.mark.slow
def test_training_runs_every_stage_with_nimble(synth_cache, tmp_path, caplog):
    """Every stage, chained, with hand_model=nimble on the tiny synthetic data. That data's 3D ground
    truth is in the open hand model's topology (1,544 vertices), the evaluation mesh in MANO's (778):
    the joint metrics are computed, the mesh metrics are left out (with a warning), not compared wrongly."""
    from conftest import tiny_overrides
    from handrecon.cli import compose_config
    from handrecon.cli.train import train

    assets = write_nimble_assets(tmp_path / "assets", tex_size=16)
    init = None
    for stage in ("ssl_kp", "ssl_shape", "ssl_e2e", "ssl_finetune"):
        out = tmp_path / stage
        over = [*tiny_overrides(synth_cache, steps=2, batch=4), f"stage={stage}", "hand_model=nimble",
                f"hand_model.path={assets}"] + ([f"init_from={init}"] if init else [])
        with caplog.at_level("WARNING"):
            summary = train(compose_config(over, out))
        assert summary["global_step"] == 2
        init = out / "checkpoints" / "last.ckpt"
        m = summary["metrics"]
        with open(out / "csv" / "metrics.csv") as fi:
            logged = {k: float(v) for row in csv.DictReader(fi) for k, v in row.items() if k.startswith("train/") and v}
        assert math.isfinite(logged["train/loss_step"])
        if stage != "ssl_kp":
            assert math.isfinite(m["val/pa_mpjpe_mm"]) and not [k for k in m if "vpe" in k or "/f5" in k or "/f15" in k]
        if stage in ("ssl_e2e", "ssl_finetune"):  # the textured NIMBLE skin was rendered and compared
            assert logged["train/photo_step"] > 0 and math.isfinite(logged["train/tex_reg_step"])
    assert "only the joint metrics are computed" in caplog.text
    assert "the term is 0" in caplog.text  # the MANO-table pose prior does not apply to NIMBLE's bones
    # predict: the MANO-topology vertices (no MANO faces given: a point cloud) and NIMBLE's textured skin
    from handrecon.cli.predict import predict

    pred = tmp_path / "pred"
    for hand in ("right", "left"):
        predict(compose_config(["task=predict", f"ckpt={init}", "input=synthetic:evaluation:2", f"out={pred / hand}",
                                f"hand={hand}"], pred / hand))
    stems = sorted(p.stem for p in (pred / "right").glob("*_overlay.png"))
    assert len(stems) == 2
    name = stems[0][: -len("_overlay")]
    import trimesh

    cloud = trimesh.load(pred / "right" / f"{name}.ply", process=False)
    assert len(cloud.vertices) == 778 and not (pred / "right" / f"{name}.obj").exists()
    skin = trimesh.load(pred / "right" / f"{name}_skin.obj", process=False)
    m = NIMBLEModel(assets)
    assert len(skin.faces) == len(m.faces) and skin.visual.uv is not None
    for k in ("diffuse", "normal", "spec"):
        assert (pred / "right" / f"{name}_skin_{k}.png").is_file()
    params = load_params_json(pred / "right" / f"{name}.json")
    assert params["texture_coefficients"].shape == (10,) and params["mano_topology_verts_m"].shape == (778, 3)
    # evaluate: pred.json in MANO topology; joint metrics only (the synthetic meshes are the open hand's)
    from handrecon.cli.evaluate import evaluate

    ev = tmp_path / "eval"
    res = evaluate(compose_config([*tiny_overrides(synth_cache), "task=evaluate", f"ckpt={init}", f"out={ev}"], ev))
    import json

    xyz, verts = json.loads((ev / "pred.json").read_text())
    assert len(verts[0]) == 778 and len(xyz[0]) == 21
    assert math.isfinite(res["metrics"]["pa_mpjpe_mm"])
    assert res["metrics"]["pa_mpvpe_mm"] is None and res["metrics"]["f5"] is None
    # export: the graph's verts are the MANO-topology ones too
    from handrecon.cli.checkpoint import load_module
    from handrecon.cli.export import example_inputs, export_model

    net = load_module(init)[0].net
    files = export_model(net, 64, tmp_path / "export", "torchscript")
    ts = torch.jit.load(files["torchscript"])
    assert ts(*example_inputs(net, 64).values())[5].shape == (2, 778, 3)
    # the left hand (mirrored back): faces and their UV corners wound the other way
    def obj(hand):
        lines = (pred / hand / f"{name}_skin.obj").read_text().splitlines()
        return ([ln.split()[1:] for ln in lines if ln.startswith("f ")],
                np.array([[float(x) for x in ln.split()[1:]] for ln in lines if ln.startswith("v ")]))

    (fr, vr), (fl, vl) = obj("right"), obj("left")
    assert fl == [f[::-1] for f in fr] and vl.shape == vr.shape
    # the checkpoint holds no NIMBLE data (like a MANO file, it stays with the user)
    sd = torch.load(init, map_location="cpu", weights_only=False)["state_dict"]
    assert not [k for k in sd if k.startswith("net.hand_model.")]
    assert sd["net.appearance.texture.weight"].shape[0] == 10  # the texture-space coefficients


def test_textured_obj_export_round_trip(tmp_path):
    """A quad with a 2 x 3 texture: OBJ v/vt/f, an MTL naming the PNGs, PNG pixels = the map (row 0 = top)."""
    import cv2
    import trimesh

    verts = np.array([[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]])
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    vuv = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.5, 0.5]])
    fuv = np.array([[0, 1, 2], [4, 2, 3]])
    diffuse = np.zeros((2, 3, 3))
    diffuse[0, 0] = [1.0, 0.0, 0.0]  # top-left texel red
    diffuse[1, 2] = [0.0, 0.0, 1.0]  # bottom-right texel blue
    written = save_textured_obj(tmp_path / "hand_skin.obj", verts, faces, vuv, fuv,
                                {"diffuse": diffuse, "spec": np.full((2, 3, 3), 0.5)})
    assert [p.name for p in written] == ["hand_skin.obj", "hand_skin.mtl", "hand_skin_diffuse.png", "hand_skin_spec.png"]
    mtl = (tmp_path / "hand_skin.mtl").read_text()
    assert "map_Kd hand_skin_diffuse.png" in mtl and "map_Ks hand_skin_spec.png" in mtl
    obj = (tmp_path / "hand_skin.obj").read_text().splitlines()
    assert obj[0] == "mtllib hand_skin.mtl" and "f 1/5 3/3 4/4" in obj
    png = cv2.imread(str(tmp_path / "hand_skin_diffuse.png"))[..., ::-1]
    assert png.shape == (2, 3, 3) and tuple(png[0, 0]) == (255, 0, 0) and tuple(png[1, 2]) == (0, 0, 255)
    mesh = trimesh.load(tmp_path / "hand_skin.obj", process=False)
    assert len(mesh.faces) == 2 and mesh.visual.material.image.size == (3, 2)
    with pytest.raises(ValueError, match="faces_uvs must be integer"):
        save_textured_obj(tmp_path / "bad.obj", verts, faces, vuv, fuv + 9, {"diffuse": diffuse})


def test_joint_regressor_mano_and_mano_faces(flat_dir, tmp_path):
    """joint_regressor=mano: MANO's J_regressor and fingertip vertices on the 778 regressed vertices,
    in canonical order; mano_path also gives the MANO-topology output its faces."""
    from fixtures_mano import make_model, write_model
    from handrecon.joints import MANO_TO_CANONICAL
    from handrecon.models.hand_model import MANO_TIP_VERTEX_IDS

    data = make_model(778, seed=3)
    mano = write_model(data, tmp_path / "MANO_RIGHT.pkl")
    m = NIMBLEModel(flat_dir, joint_regressor="mano", mano_path=mano)
    assert m.mano_faces.shape == (len(data["f"]), 3)
    out = m(torch.randn(2, 30) * 0.3, torch.randn(2, 20))
    mv = out.mano_verts.double().numpy()
    reg = data["J_regressor"].toarray()
    want = np.concatenate([np.einsum("jv,bvc->bjc", reg, mv), mv[:, list(MANO_TIP_VERTEX_IDS)]], 1)[:, MANO_TO_CANONICAL]
    np.testing.assert_allclose(out.joints.double().numpy(), want, atol=1e-6)
    with pytest.raises(ValueError, match="vertices, but NIMBLE_MANO_VREG.pkl regresses 778"):
        (tmp_path / "small").mkdir()
        NIMBLEModel(flat_dir, mano_path=write_model(make_model(120), tmp_path / "small" / "MANO_RIGHT.pkl"))
