"""handrecon.models.mano_io: chumpy-free, restricted loading of MANO-layout pickles."""

from __future__ import annotations

import os
import pickle
import sys

import numpy as np
import pytest
import scipy.sparse
import torch

from fixtures_mano import make_model, write_model
from handrecon.models.hand_model import HandModel
from handrecon.models.mano_io import MANOFileNotFound, load_mano_pickle, resolve_model_file

TIPS = [91, 19, 37, 73, 55]  # the distal (-x) vertex of the octahedron of each finger's last joint


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("mano")
    data = make_model(120, seed=1)
    return data, {
        "plain": write_model(data, d / "plain_RIGHT.pkl"),
        "chumpy": write_model(data, d / "chumpy_RIGHT.pkl", chumpy_keys=("shapedirs", "hands_mean")),
        "chumpy_p1": write_model(data, d / "chumpy_p1_RIGHT.pkl", chumpy_keys=("shapedirs",), protocol=1),
        "expression": write_model(data, d / "expr_RIGHT.pkl", expression_keys=("shapedirs",)),
    }


def test_chumpy_arrays_become_numpy_without_chumpy(model_files):
    data, files = model_files
    assert "chumpy" not in sys.modules
    for key in ("chumpy", "chumpy_p1"):
        with open(files[key], "rb") as fh:  # the file really references chumpy's class
            assert b"chumpy.ch" in fh.read()
        out = load_mano_pickle(files[key])
        assert type(out["shapedirs"]) is np.ndarray
        np.testing.assert_array_equal(out["shapedirs"], data["shapedirs"])
        assert scipy.sparse.issparse(out["J_regressor"])
        np.testing.assert_array_equal(out["J_regressor"].toarray(), data["J_regressor"].toarray())
        np.testing.assert_array_equal(out["kintree_table"], data["kintree_table"])
        assert out["bs_style"] == "lbs" and out["bs_type"] == "lrotmin"
    assert "chumpy" not in sys.modules and "chumpy.ch" not in sys.modules


def test_plain_and_chumpy_files_give_identical_hand_models(model_files):
    data, files = model_files
    a = HandModel(files["plain"], use_pca=True, num_pca_comps=12, tip_vertex_ids=TIPS)
    b = HandModel(files["chumpy"], use_pca=True, num_pca_comps=12, tip_vertex_ids=TIPS)
    g = torch.Generator().manual_seed(0)
    pose, betas = torch.randn(3, 12, generator=g), torch.randn(3, 10, generator=g)
    rot = torch.randn(3, 3, generator=g)
    oa, ob = a(pose, betas, rot), b(pose, betas, rot)
    assert torch.equal(oa.verts, ob.verts) and torch.equal(oa.joints, ob.joints)
    assert torch.equal(a.faces, b.faces)


def test_chumpy_expression_without_value_is_a_clear_error(model_files):
    _, files = model_files
    with pytest.raises(pickle.UnpicklingError, match="shapedirs.*chumpy expression"):
        load_mano_pickle(files["expression"])


class _Evil:
    def __reduce__(self):
        return (os.getcwd, ())


class _EvalCall:
    def __reduce__(self):
        return (eval, ("1 + 1",))


@pytest.mark.parametrize("payload", [_Evil(), _EvalCall()])
def test_code_in_a_pickle_is_refused(tmp_path, payload):
    path = tmp_path / "evil.pkl"
    with open(path, "wb") as fh:
        pickle.dump({"v_template": np.zeros((3, 3)), "x": payload}, fh, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        load_mano_pickle(path)


def test_missing_file_explains_where_to_get_mano(tmp_path):
    with pytest.raises(MANOFileNotFound) as err:
        load_mano_pickle(tmp_path / "MANO_RIGHT.pkl")
    assert isinstance(err.value, FileNotFoundError)
    msg = str(err.value)
    for part in ("Romero", "https://mano.is.tue.mpg.de", "MANO_RIGHT.pkl", "MANO_LEFT.pkl", "hand_model=mano",
                 "hand_model.path=", "hand_model=openhand"):
        assert part in msg, part
    with pytest.raises(MANOFileNotFound, match="MANO_LEFT.pkl"):  # a folder without the side's file
        resolve_model_file(tmp_path, "left")
    with pytest.raises(MANOFileNotFound):
        HandModel(tmp_path)


def test_folder_resolves_by_side(tmp_path):
    data = make_model(100)
    write_model(data, tmp_path / "MANO_RIGHT.pkl")
    write_model(data, tmp_path / "MANO_LEFT.pkl")
    assert resolve_model_file(tmp_path, "right").name == "MANO_RIGHT.pkl"
    assert resolve_model_file(tmp_path, "left").name == "MANO_LEFT.pkl"
    with pytest.raises(ValueError, match="side"):
        resolve_model_file(tmp_path, "both")


def test_not_a_dict_is_refused(tmp_path):
    path = tmp_path / "list.pkl"
    with open(path, "wb") as fh:
        pickle.dump([np.zeros(3)], fh, protocol=2)
    with pytest.raises(ValueError, match="expected a dict"):
        load_mano_pickle(path)
