"""Bad MANO files: arrays that do not fit together, and a file of the other hand than its name or
the config says -> one clear error naming the file (and the arrays), never a traceback from smplx."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
import torch
from scipy.spatial.transform import Rotation

from fixtures_mano import make_model, write_model, write_official_model
from handrecon.models.hand_model import HandModel, mirror_model, model_side

TIPS = [91, 19, 37, 73, 55]


def _broken(key: str):
    data = make_model(120, seed=5)
    V = 120
    if key == "weights":
        data["weights"] = data["weights"][:, :15]
    elif key == "posedirs":
        data["posedirs"] = data["posedirs"][:, :, :134]
    elif key == "shapedirs":
        data["shapedirs"] = data["shapedirs"][:100]
    elif key == "J_regressor":
        data["J_regressor"] = scipy.sparse.csc_matrix(data["J_regressor"].toarray()[:, :110])
    elif key == "hands_mean":
        data["hands_mean"] = data["hands_mean"][:44]
    elif key == "hands_components":
        data["hands_components"] = data["hands_components"][:, :40]
    elif key == "f":
        data["f"] = data["f"].copy()
        data["f"][3, 1] = V + 7
    elif key == "kintree_table":
        data["kintree_table"] = data["kintree_table"][:, :15]
    return data


@pytest.mark.parametrize("key, expected", [
    ("weights", r"'weights' has shape \(120, 15\); expected \(120, 16\)"),
    ("posedirs", r"'posedirs' has shape \(120, 3, 134\); expected \(120, 3, 135\)"),
    ("shapedirs", r"'shapedirs' has shape \(100, 3, 10\); expected \(120, 3, "),
    ("J_regressor", r"'J_regressor' has shape \(16, 110\); expected \(16, 120\)"),
    ("hands_mean", r"'hands_mean' has shape \(44,\); expected \(45,\)"),
    ("hands_components", r"'hands_components' has shape \(45, 40\)"),
    ("f", r"'f' refers to vertices 0..127, but the model has 120"),
    ("kintree_table", r"'kintree_table' has shape \(2, 15\); expected \(2, 16\)"),
])  # fmt: skip
def test_inconsistent_arrays_are_one_clear_error(tmp_path, key, expected):
    path = write_model(_broken(key), tmp_path / "MANO_RIGHT.pkl")
    with pytest.raises(ValueError, match=expected) as err:
        HandModel(path, tip_vertex_ids=TIPS)
    msg = str(err.value)
    assert msg.startswith(str(path)) and "V = 120 vertices" in msg


def test_every_misfit_is_named_in_the_one_error_also_in_the_official_structure(tmp_path):
    data = _broken("weights")
    data["posedirs"] = data["posedirs"][:, :, :100]
    path = write_official_model(data, tmp_path / "MANO_RIGHT.pkl")  # shapedirs a chumpy Select here
    with pytest.raises(ValueError, match=r"'weights' has shape .*; 'posedirs' has shape \(120, 3, 100\)"):
        HandModel(path, tip_vertex_ids=TIPS)


def test_non_finite_values_are_named(tmp_path):
    data = make_model(120, seed=6)
    data["posedirs"] = data["posedirs"].copy()
    data["posedirs"][4, 1, 7] = np.nan
    path = write_model(data, tmp_path / "MANO_RIGHT.pkl")
    with pytest.raises(ValueError, match=r"'posedirs' holds 1 non-finite values") as err:
        HandModel(path, tip_vertex_ids=TIPS)
    assert str(path) in str(err.value)


def test_more_pca_components_than_the_file_has(tmp_path):
    data = make_model(120, seed=7)
    data["hands_components"] = data["hands_components"][:12]
    path = write_model(data, tmp_path / "MANO_RIGHT.pkl")
    with pytest.raises(ValueError, match=r"num_pca_comps=30, but the model has only 12 pose PCA components"):
        HandModel(path, num_pca_comps=30, tip_vertex_ids=TIPS)
    assert HandModel(path, num_pca_comps=12, tip_vertex_ids=TIPS).pose_dim == 12


def test_the_side_of_a_model_comes_from_its_geometry_and_survives_rotations():
    right = make_model(120, seed=8)
    assert model_side(right) == "right" and model_side(mirror_model(right)) == "left"
    for seed in range(5):  # any rotation of the hand keeps its side; only a mirror changes it
        R = Rotation.random(random_state=seed).as_matrix()
        for data, want in ((right, "right"), (mirror_model(right), "left")):
            turned = dict(data, v_template=np.asarray(data["v_template"]) @ R.T)
            assert model_side(turned) == want
    flat = dict(right, v_template=np.asarray(right["v_template"]) * [1.0, 0.0, 1.0])  # no palm side at all
    assert model_side(flat) is None


def test_a_left_hand_under_a_neutral_name_asked_for_as_right_is_refused(tmp_path):
    right = make_model(120, seed=9)
    left_file = write_official_model(mirror_model(right), tmp_path / "hand_model.pkl")  # neither LEFT nor RIGHT
    with pytest.raises(ValueError, match=r"is a LEFT hand model .*\(hand_model.side=right\).*MANO_LEFT.pkl") as err:
        HandModel(left_file, side="right", tip_vertex_ids=TIPS)
    assert str(left_file) in str(err.value)
    # asked for as the left hand it is used as it is (not mirrored): the mirror image of the right file's hand
    right_file = write_official_model(right, tmp_path / "MANO_RIGHT.pkl")
    g = torch.Generator().manual_seed(1)
    pose, betas = torch.randn(2, 45, generator=g) * 0.3, torch.randn(2, 10, generator=g)
    ml = HandModel(left_file, side="left", use_pca=False, tip_vertex_ids=TIPS)
    mr = HandModel(right_file, side="left", use_pca=False, tip_vertex_ids=TIPS)
    assert torch.allclose(ml(pose, betas).verts, mr(pose, betas).verts, atol=1e-7)


def test_a_file_named_for_the_other_hand_is_refused(tmp_path):
    right = make_model(120, seed=10)
    (tmp_path / "a").mkdir()
    wrong = write_official_model(right, tmp_path / "a" / "MANO_LEFT.pkl")  # a right hand named LEFT
    with pytest.raises(ValueError, match=r"MANO_LEFT.pkl: the file name says LEFT but the model is a right hand"):
        HandModel(tmp_path / "a", side="left", tip_vertex_ids=TIPS)
    with pytest.raises(ValueError, match="says LEFT but the model is a right hand"):
        HandModel(wrong, side="right", tip_vertex_ids=TIPS)
