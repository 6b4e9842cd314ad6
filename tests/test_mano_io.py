"""handrecon.models.mano_io: chumpy-free, restricted loading of MANO-layout pickles."""

from __future__ import annotations

import os
import pickle
import sys

import numpy as np
import pytest
import scipy.sparse
import torch

from fixtures_mano import (
    OFFICIAL_GLOBALS,
    OFFICIAL_KEY_ORDER,
    FakeCh,
    FakeSelect,
    fake_chumpy_class,
    make_model,
    write_model,
    write_official_model,
)
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
    }


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """A model of the official size (778 vertices, 1,554 recorded poses) as a plain pickle and in the
    official files' exact structure."""
    d = tmp_path_factory.mktemp("mano_official")
    data = make_model(778, seed=2)
    data["hands_coeffs"] = np.random.default_rng(3).normal(0, 1, (1554, 45))
    (d / "plain").mkdir()
    (d / "official").mkdir()
    plain = write_model(data, d / "plain" / "MANO_RIGHT.pkl")
    return data, plain, write_official_model(data, d / "official" / "MANO_RIGHT.pkl")


def _globals_and_opcodes(path):
    import pickletools

    glob, ops = set(), set()
    for op, arg, _ in pickletools.genops(path.read_bytes()):
        ops.add(op.name)
        if op.name == "GLOBAL":
            glob.add(tuple(arg.split(" ")))
    return glob, ops


def test_official_fixture_has_the_official_files_structure(official):
    data, _, path = official
    glob, ops = _globals_and_opcodes(path)
    # exactly the globals that MANO_RIGHT.pkl v1.2 references (Python 2 names), and Python 2's opcodes:
    # byte strings (SHORT_BINSTRING / BINSTRING), no unicode and no Python 3 bytes (_codecs.encode)
    assert glob == OFFICIAL_GLOBALS
    assert {"PROTO", "NEWOBJ", "BINSTRING", "SHORT_BINSTRING"} <= ops
    assert not ops & {"BINUNICODE", "SHORT_BINUNICODE", "BINBYTES", "SHORT_BINBYTES", "FRAME", "STACK_GLOBAL"}
    assert path.read_bytes()[:2] == b"\x80\x02"  # protocol 2
    # its shapedirs is a Select over the 20-component Ch: a.x.ravel()[idxs].reshape(preferred_shape) == a.x[:, :, :10]
    import pickle as pk

    class Peek(pk.Unpickler):
        def find_class(self, module, name):
            if module.startswith("chumpy") or module == "scipy.sparse.csc":
                return type(name, (), {"__setstate__": lambda self, st: self.__dict__.update(st)})
            return super().find_class(module, name)

    raw = Peek(open(path, "rb"), encoding="latin1").load()
    assert list(raw) == list(OFFICIAL_KEY_ORDER)
    sel = raw["shapedirs"]
    assert type(sel).__name__ == "Select" and type(sel.a).__name__ == "Ch"
    assert sel.a.x.shape == (778, 3, 20) and sel.idxs.shape == (23340,) and sel.preferred_shape == (778, 3, 10)
    np.testing.assert_array_equal(sel.a.x.ravel()[sel.idxs].reshape(sel.preferred_shape), sel.a.x[:, :, :10])
    assert set(raw["J_regressor"].__dict__) == {"indices", "data", "maxprint", "_shape", "indptr"}
    assert raw["hands_coeffs"].shape == (1554, 45) and raw["bs_style"] == "lbs" and raw["bs_type"] == "lrotmin"
    assert raw["kintree_table"].flags.f_contiguous and not raw["kintree_table"].flags.c_contiguous


def test_official_structure_loads_and_equals_the_plain_file(official):
    data, plain, path = official
    assert "chumpy" not in sys.modules
    a, b = load_mano_pickle(plain), load_mano_pickle(path)
    assert "chumpy" not in sys.modules and "chumpy.reordering" not in sys.modules
    assert set(a) == set(b)
    for k in a:
        if scipy.sparse.issparse(a[k]):
            assert scipy.sparse.issparse(b[k]) and b[k].format == "csc"
            np.testing.assert_array_equal(a[k].toarray(), b[k].toarray())
        elif isinstance(a[k], np.ndarray):
            assert type(b[k]) is np.ndarray and b[k].shape == a[k].shape, k
            np.testing.assert_array_equal(a[k], b[k])
        else:
            assert a[k] == b[k] and type(b[k]) is str, k
    assert b["shapedirs"].shape == (778, 3, 10)


def test_official_structure_gives_the_identical_hand_layer(official):
    _, plain, path = official
    g = torch.Generator().manual_seed(0)
    pose, betas, rot = torch.randn(2, 30, generator=g), torch.randn(2, 10, generator=g), torch.randn(2, 3, generator=g)
    oa = HandModel(plain, num_pca_comps=30)(pose, betas, rot)
    ob = HandModel(path, num_pca_comps=30)(pose, betas, rot)
    assert torch.equal(oa.verts, ob.verts) and torch.equal(oa.joints, ob.joints)
    assert oa.verts.shape == (2, 778, 3)


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


def test_broken_or_unknown_chumpy_objects_are_clear_errors(tmp_path):
    data = make_model(100)
    x = np.zeros((100, 3, 20))
    bad = {
        "range": (FakeSelect(FakeCh(x), np.arange(3000, 6001), (1000, 3, 1)), r"idxs range 3000..6000 .* 6000 values"),
        "shape": (FakeSelect(FakeCh(x), np.arange(3000), (100, 3, 11)), r"3000 selected values .* \(100, 3, 11\)"),
        "no_a": (FakeSelect.__new__(FakeSelect), r"no 'a' in its pickled state"),
        "other": (fake_chumpy_class("chumpy.ch_ops", "add")({"a": FakeCh(x), "b": FakeCh(x)}),
                  r"class chumpy.ch_ops.add, which handrecon does not evaluate"),
    }
    bad["no_a"][0].state = {"idxs": np.arange(3)}
    for name, (obj, msg) in bad.items():
        path = write_official_model(data, tmp_path / f"{name}.pkl", replace={"shapedirs": obj})
        with pytest.raises(pickle.UnpicklingError, match=msg) as err:
            load_mano_pickle(path)
        assert str(path) in str(err.value) and "'shapedirs'" in str(err.value)


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
