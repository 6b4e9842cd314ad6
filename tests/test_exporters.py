"""Mesh, submission and parameter exporters (handrecon.eval.exporters, handrecon.eval.ho3d)."""

import json

import numpy as np
import pytest
import torch
import trimesh

from handrecon.eval.exporters import (
    load_params_json,
    save_obj,
    save_params_json,
    save_ply,
    write_freihand_pred,
)
from handrecon.eval.ho3d import read_ho3d_pred, write_ho3d_pred
from handrecon.joints import JOINT_NAMES

RNG = np.random.default_rng(3)


def tetra():
    verts = np.array([[0.0, 0.0, 0.5], [0.01, 0.0, 0.5], [0.0, 0.01, 0.5], [0.0, 0.0, 0.51]])
    faces = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    colors = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.25, 1.0]])
    return verts, faces, colors


def load(path):
    return trimesh.load(path, process=False, force="mesh")


def test_obj_round_trip_keeps_vertices_faces_and_colours(tmp_path):
    verts, faces, colors = tetra()
    path = save_obj(tmp_path / "m.obj", verts, faces, colors)
    v_lines = [ln.split() for ln in path.read_text().splitlines() if ln.startswith("v ")]
    assert len(v_lines) == 4 and all(len(ln) == 7 for ln in v_lines)  # v x y z r g b
    mesh = load(path)
    np.testing.assert_allclose(mesh.vertices, verts, atol=1e-7)
    np.testing.assert_array_equal(mesh.faces, faces)
    np.testing.assert_array_equal(mesh.visual.vertex_colors[:, :3], np.round(colors * 255).astype(np.uint8))
    # a small overshoot (e.g. shading) is clipped, integer 0-255 colours are taken as they are
    over = save_ply(tmp_path / "over.ply", verts, faces, colors * 1.05 - 0.02)
    np.testing.assert_array_equal(
        load(over).visual.vertex_colors[:4, :3], [[255, 0, 0], [0, 255, 0], [0, 0, 255], [129, 62, 255]]
    )
    ints = save_ply(tmp_path / "ints.ply", verts, faces, np.full((4, 3), 7, dtype=np.int64))
    assert (load(ints).visual.vertex_colors[:, :3] == 7).all()
    plain = save_obj(tmp_path / "plain.obj", torch.tensor(verts), torch.tensor(faces))  # tensors, no colours
    assert all(len(ln.split()) == 4 for ln in plain.read_text().splitlines() if ln.startswith("v "))


@pytest.mark.parametrize("binary", [True, False])
def test_ply_round_trip_with_uchar_colours(tmp_path, binary):
    verts, faces, _ = tetra()
    colors = RNG.integers(0, 256, size=(4, 3)).astype(np.uint8)
    path = save_ply(tmp_path / "m.ply", verts, faces, colors, binary=binary)
    header = path.read_bytes().split(b"end_header")[0].decode()
    assert ("binary_little_endian" in header) == binary
    for prop in ("property uchar red", "property uchar green", "property uchar blue"):
        assert prop in header
    mesh = load(path)
    np.testing.assert_allclose(mesh.vertices, verts, atol=1e-6)  # PLY stores float32
    np.testing.assert_array_equal(mesh.faces, faces)
    np.testing.assert_array_equal(mesh.visual.vertex_colors[:, :3], colors)


def test_mesh_bad_inputs_name_the_file(tmp_path):
    verts, faces, colors = tetra()
    with pytest.raises(ValueError, match=r"bad.obj: faces index vertices outside \[0, 3\]"):
        save_obj(tmp_path / "bad.obj", verts, faces + 1)
    with pytest.raises(ValueError, match=r"bad.ply: colors must have shape \(4, 3\)"):
        save_ply(tmp_path / "bad.ply", verts, faces, colors[:3])
    with pytest.raises(ValueError, match=r"float colors must lie in \[0, 1\] \(got \[0, 255\]\)"):
        save_ply(tmp_path / "bad.ply", verts, faces, colors * 255)
    with pytest.raises(ValueError, match="colors contain NaN"):
        save_ply(tmp_path / "bad.ply", verts, faces, colors * np.nan)
    with pytest.raises(ValueError, match=r"verts must have shape \(V, 3\)"):
        save_obj(tmp_path / "bad.obj", verts[:, :2], faces)
    assert not (tmp_path / "bad.obj").exists() and not (tmp_path / "bad.ply").exists()


def test_freihand_pred_format(tmp_path):
    joints = RNG.normal(size=(3, 21, 3)) * 0.05
    verts = RNG.normal(size=(3, 30, 3)) * 0.05
    path = write_freihand_pred(tmp_path / "pred.json", torch.tensor(joints), verts)
    xyz, vv = json.loads(path.read_text())
    assert np.shape(xyz) == (3, 21, 3) and np.shape(vv) == (3, 30, 3)
    assert np.abs(np.asarray(xyz) - joints).max() <= 5e-7  # rounded to 1 micrometre
    with pytest.raises(ValueError, match="pred2.json: 3 joint sets but 2 vertex sets"):
        write_freihand_pred(tmp_path / "pred2.json", joints, verts[:2])
    with pytest.raises(ValueError, match=r"joints must have shape \(N, 21, 3\)"):
        write_freihand_pred(tmp_path / "pred3.json", joints[:, :16], verts)


def test_params_json_round_trip(tmp_path):
    params = {
        "pose": torch.arange(48, dtype=torch.float32) / 10,
        "shape": np.linspace(-1, 1, 10),
        "scale": np.float32(1.5),
        "K": np.eye(3),
        "image": "00000001.jpg",
        "extra": {"light": [0.1, 0.2, 0.3], "ok": True},
    }
    back = load_params_json(save_params_json(tmp_path / "p.json", params))
    np.testing.assert_allclose(back["pose"], params["pose"].numpy(), rtol=1e-7)
    np.testing.assert_allclose(back["shape"], params["shape"])
    np.testing.assert_array_equal(back["K"], np.eye(3))
    assert back["scale"] == 1.5 and back["image"] == "00000001.jpg" and back["extra"]["ok"] is True
    with pytest.raises(TypeError, match="'bad' has unsupported type object"):
        save_params_json(tmp_path / "q.json", {"bad": object()})


def test_ho3d_submission_order_axes_and_round_trip(tmp_path):
    joints = RNG.normal(scale=0.04, size=(2, 21, 3)) + np.array([0.0, 0.0, 0.5])  # OpenCV: z > 0
    verts = RNG.normal(scale=0.04, size=(2, 778, 3)) + np.array([0.0, 0.0, 0.5])
    path = write_ho3d_pred(tmp_path / "pred.json", joints, verts)
    xyz, vv = (np.asarray(a) for a in json.loads(path.read_text()))
    assert xyz.shape == (2, 21, 3) and vv.shape == (2, 778, 3)
    assert (xyz[..., 2] < 0).all() and (vv[..., 2] < 0).all()  # OpenGL: hand at negative z
    flip = np.array([1.0, -1.0, -1.0])
    # HO3D order: 0 wrist, 1-3 index, 4-6 middle, 7-9 little, 10-12 ring, 13-15 thumb, 16-20 tips
    for ho3d_idx, name in [(0, "wrist"), (1, "index_mcp"), (4, "middle_mcp"), (7, "little_mcp"),
                           (10, "ring_mcp"), (13, "thumb_mcp"), (15, "thumb_dip"), (16, "thumb_tip"),
                           (20, "little_tip")]:  # fmt: skip
        np.testing.assert_allclose(xyz[:, ho3d_idx], joints[:, JOINT_NAMES.index(name)] * flip, atol=1e-6)
    j_back, v_back = read_ho3d_pred(path)
    np.testing.assert_allclose(j_back, joints, atol=1e-6)
    np.testing.assert_allclose(v_back, verts, atol=1e-6)
    with pytest.raises(ValueError, match=r"sample\(s\) \[1\] have every joint at z < 0"):
        write_ho3d_pred(tmp_path / "gl.json", np.stack([joints[0], joints[1] * flip]), verts)
