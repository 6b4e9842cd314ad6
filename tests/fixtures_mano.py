"""Small MANO-layout model files for tests (no MANO data): the official pickle layout, with or without
chumpy objects. :func:`write_official_model` reproduces the exact object structure of the official
MANO v1.2 files (a Python 2 pickle with a chumpy Select for shapedirs and an old-SciPy csc_matrix);
:func:`write_model` writes plain Python 3 pickles, optionally with plain chumpy arrays through a
throw-away fake ``chumpy`` module removed from ``sys.modules`` right after writing. Neither imports
chumpy, so loading proves that chumpy is never needed."""

from __future__ import annotations

import pickle
import sys
import types
from pathlib import Path

import numpy as np
import scipy.sparse

from handrecon.joints import MANO_PARENTS

ROOT_PARENT = 4294967295
#: a hand-like set of 16 rest joints (MANO order, metres; fingers along -x, thumb on +z)
JOINTS = np.array([
    [0.095, 0.0, 0.0],
    [0.005, -0.002, 0.024], [-0.022, -0.002, 0.026], [-0.042, -0.002, 0.028],
    [0.0, 0.0, 0.002], [-0.028, 0.0, 0.002], [-0.054, 0.0, 0.002],
    [0.012, -0.005, -0.035], [-0.008, -0.005, -0.040], [-0.025, -0.005, -0.044],
    [0.004, -0.002, -0.018], [-0.023, -0.002, -0.021], [-0.047, -0.002, -0.023],
    [0.075, -0.013, 0.022], [0.048, -0.019, 0.046], [0.024, -0.022, 0.061],
])  # fmt: skip
_OCTA = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], float)
_OCTA_FACES = np.array([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]])


def make_model(n_verts: int = 120, seed: int = 0) -> dict:
    """A MANO-layout dict: an outward octahedron (radius 4 mm) around each joint (96 vertices), plus
    free vertices near the joints up to ``n_verts``; random shape / pose blend shapes and PCA basis."""
    rng = np.random.default_rng(seed)
    verts = (JOINTS[:, None, :] + 0.004 * _OCTA[None]).reshape(-1, 3)
    owner = np.repeat(np.arange(16), 6)
    extra = n_verts - len(verts)
    if extra < 0:
        raise ValueError("n_verts must be >= 96")
    extra_owner = rng.integers(0, 16, extra)
    verts = np.concatenate([verts, JOINTS[extra_owner] + rng.normal(0, 0.003, (extra, 3))])
    owner = np.concatenate([owner, extra_owner])
    faces = np.concatenate([_OCTA_FACES + 6 * j for j in range(16)]).astype(np.uint32)
    weights = np.zeros((n_verts, 16))
    weights[np.arange(n_verts), owner] = 0.7
    parent = np.array([MANO_PARENTS[j] if j > 0 else 0 for j in owner])
    weights[np.arange(n_verts), parent] += 0.3
    reg = np.zeros((16, n_verts))
    for j in range(16):
        reg[j, 6 * j : 6 * j + 6] = 1.0 / 6.0
    comps, _ = np.linalg.qr(rng.normal(size=(45, 45)))
    return {
        "v_template": verts,
        "f": faces,
        "J_regressor": scipy.sparse.csc_matrix(reg),
        "J": reg @ verts,
        "weights": weights,
        "kintree_table": np.array([[ROOT_PARENT] + list(MANO_PARENTS[1:]), list(range(16))], dtype=np.int64),
        "shapedirs": rng.normal(0, 0.002, (n_verts, 3, 10)),
        "posedirs": rng.normal(0, 0.001, (n_verts, 3, 135)),
        "hands_components": comps.T.copy(),
        "hands_mean": rng.normal(0, 0.2, 45),
        "hands_coeffs": rng.normal(0, 1, (8, 45)),
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }


def _install_fake_chumpy():
    chumpy = types.ModuleType("chumpy")
    ch = types.ModuleType("chumpy.ch")
    reordering = types.ModuleType("chumpy.reordering")

    class Ch:
        def __init__(self, x):
            self.x = np.asarray(x)

        def __getstate__(self):  # the layout of a real chumpy array's pickled state
            return {"x": self.x, "_dirty_vars": set(), "_itr": None, "_make_dense": False, "_make_sparse": False,
                    "_depends_on_deps": {}}

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    ch.Ch, chumpy.ch, chumpy.reordering = Ch, ch, reordering
    sys.modules.update({"chumpy": chumpy, "chumpy.ch": ch, "chumpy.reordering": reordering})
    return Ch


def _remove_fake_chumpy():
    for name in ("chumpy", "chumpy.ch", "chumpy.reordering"):
        sys.modules.pop(name, None)


def write_model(data: dict, path, chumpy_keys=(), protocol: int = 2) -> Path:
    """Pickle ``data`` (Python 3 pickle); ``chumpy_keys`` become plain chumpy.ch.Ch arrays. For the
    exact structure of the official files use :func:`write_official_model`."""
    path = Path(path)
    out = dict(data)
    if chumpy_keys:
        Ch = _install_fake_chumpy()
        try:
            for k in chumpy_keys:
                out[k] = Ch(data[k])
            with open(path, "wb") as fh:
                pickle.dump(out, fh, protocol=protocol)
        finally:
            _remove_fake_chumpy()
    else:
        with open(path, "wb") as fh:
            pickle.dump(out, fh, protocol=protocol)
    return path


def mirror_as_official_left(data: dict) -> dict:
    """The left file as MANO releases it: the mirror image of the right model, except that shapedirs
    keep the right hand's x sign (the known defect of MANO_LEFT.pkl)."""
    from handrecon.models.hand_model import mirror_model

    left = mirror_model(data)
    left["shapedirs"] = np.array(data["shapedirs"], copy=True)
    return left


# ------------------------------------------------------------------ the official files' exact structure
# MANO_RIGHT.pkl / MANO_LEFT.pkl (MANO v1.2, as S2HAND ships it in examples/data/) are Python 2 protocol-2
# pickles: every str (keys, 'lbs', the arrays' raw bytes) is a Python 2 byte string (SHORT_BINSTRING /
# BINSTRING, read back with encoding='latin1'); arrays go through numpy.core.multiarray._reconstruct with
# the (1, shape, dtype, is_fortran, raw) state; J_regressor is a scipy.sparse.csc.csc_matrix built by
# NEWOBJ with the old SciPy's state {indices, data, maxprint, _shape, indptr}; shapedirs is a
# chumpy.reordering.Select (state: a, idxs, preferred_shape and chumpy's bookkeeping _dirty_vars, _itr,
# _depends_on_deps) whose `a` is a chumpy.ch.Ch (state: x, _dirty_vars, _itr, _depends_on_deps) holding
# all 20 shape components; every other entry is a plain array (kintree_table in Fortran order).
# The classes below only carry that state; _Py2Pickler writes them under the official module names
# without importing chumpy or the old SciPy module.

import copyreg  # noqa: E402
import io  # noqa: E402
import struct  # noqa: E402

#: the globals an official MANO pickle references (read from the file's opcodes), Python 2 names
OFFICIAL_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy", "ndarray"), ("numpy", "dtype"),
    ("scipy.sparse.csc", "csc_matrix"), ("chumpy.reordering", "Select"), ("chumpy.ch", "Ch"), ("__builtin__", "set"),
}
#: the entries in the order the official file stores them
OFFICIAL_KEY_ORDER = ("hands_components", "f", "J_regressor", "kintree_table", "J", "bs_style", "hands_coeffs",
                      "weights", "posedirs", "hands_mean", "v_template", "shapedirs", "bs_type")


class _State:
    """An object pickled as NEWOBJ(cls) + BUILD(state), as Python 2 pickled chumpy and SciPy objects;
    ``PY2_NAME`` (module, class) is the global it is written as."""

    PY2_NAME: tuple[str, str] = ("", "")

    def __init__(self, state: dict):
        self.state = state

    def __reduce_ex__(self, protocol):
        return copyreg.__newobj__, (type(self),), self.state


class FakeCh(_State):
    """chumpy.ch.Ch: a plain chumpy array."""

    PY2_NAME = ("chumpy.ch", "Ch")

    def __init__(self, x):
        super().__init__({"x": np.asarray(x), "_dirty_vars": set(), "_itr": None, "_depends_on_deps": {}})


class FakeSelect(_State):
    """chumpy.reordering.Select: a.ravel()[idxs].reshape(preferred_shape) (what ``ch_array[..., :10]`` makes)."""

    PY2_NAME = ("chumpy.reordering", "Select")

    def __init__(self, a: FakeCh, idxs, preferred_shape):
        super().__init__({"a": a, "_dirty_vars": {"preferred_shape", "a", "idxs"}, "_itr": None,
                          "_depends_on_deps": {}, "preferred_shape": tuple(preferred_shape),
                          "idxs": np.asarray(idxs, np.int64)})


class FakeCsc(_State):
    """scipy.sparse.csc.csc_matrix as an old SciPy pickled it."""

    PY2_NAME = ("scipy.sparse.csc", "csc_matrix")

    def __init__(self, m):
        m = scipy.sparse.csc_matrix(m)
        super().__init__({"indices": m.indices.astype(np.int32), "data": m.data.astype(np.float64), "maxprint": 50,
                          "_shape": tuple(int(s) for s in m.shape), "indptr": m.indptr.astype(np.int32)})


def _reconstruct():  # stand-ins for numpy's reconstructor and classes under their Python 2 names
    raise AssertionError("never called")


class _NdArray:
    pass


class _Dtype:
    pass


class _Py2Pickler(pickle._Pickler):
    """Protocol 2 as Python 2 wrote it: str/bytes as byte strings, numpy arrays with raw byte strings,
    globals under their Python 2 module names."""

    GLOBALS = {_reconstruct: ("numpy.core.multiarray", "_reconstruct"),
               _NdArray: ("numpy", "ndarray"), _Dtype: ("numpy", "dtype"), set: ("__builtin__", "set")}
    dispatch = dict(pickle._Pickler.dispatch)

    def __init__(self, file):
        super().__init__(file, protocol=2)
        self.globals_written: set[tuple[str, str]] = set()

    def save_py2_str(self, obj):
        raw = obj.encode("latin1") if isinstance(obj, str) else bytes(obj)
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str

    def save_global(self, obj, name=None):
        module, qualname = obj.PY2_NAME if isinstance(obj, type) and issubclass(obj, _State) else self.GLOBALS[obj]
        self.write(pickle.GLOBAL + f"{module}\n{qualname}\n".encode("ascii"))
        self.globals_written.add((module, qualname))
        self.memoize(obj)

    dispatch[type] = save_global
    dispatch[types.FunctionType] = save_global

    def reducer_override(self, obj):
        if isinstance(obj, np.ndarray):
            fortran = bool(obj.flags.f_contiguous and not obj.flags.c_contiguous)
            raw = obj.tobytes(order="F" if fortran else "C")
            return _reconstruct, (_NdArray, tuple([0]), b"b"), (1, obj.shape, obj.dtype, fortran, raw)
        if isinstance(obj, np.dtype):
            return _Dtype, (obj.str[1:], 0, 1), (3, obj.str[0] if obj.itemsize > 1 else "|", None, None, None, -1, -1, 0)
        return NotImplemented


def fake_chumpy_class(module: str, name: str) -> type:
    """Another chumpy class (e.g. chumpy.ch_ops.add) for files the official ones are not."""
    return type(f"Fake_{name}", (_State,), {"PY2_NAME": (module, name)})


def official_structure(data: dict, seed: int = 0) -> dict:
    """``data`` (a :func:`make_model` dict) in the object layout of the official MANO files:
    shapedirs a Select over a Ch with 20 components (the first 10 are ``data['shapedirs']``), J_regressor
    an old-SciPy csc_matrix, kintree_table in Fortran order, everything else plain arrays / strings."""
    rng = np.random.default_rng(seed)
    sd = np.asarray(data["shapedirs"], np.float64)
    V, _, S = sd.shape
    full = np.concatenate([sd, rng.normal(0, 0.002, (V, 3, 20 - S))], axis=2)  # the files store 20 components
    idxs = np.arange(full.size).reshape(full.shape)[:, :, :S].ravel()  # what chumpy's a[:, :, :10] records
    out = {}
    for k in OFFICIAL_KEY_ORDER:
        v = data[k]
        if k == "shapedirs":
            v = FakeSelect(FakeCh(full), idxs, (V, 3, S))
        elif k == "J_regressor":
            v = FakeCsc(v)
        elif k == "kintree_table":
            v = np.asfortranarray(np.asarray(v, np.int64))
        elif isinstance(v, np.ndarray):
            v = np.ascontiguousarray(v)
        out[k] = v
    for k in data:  # anything a test added beyond the official keys
        if k not in out:
            out[k] = data[k]
    return out


def write_official_model(data: dict, path, seed: int = 0, replace: dict | None = None) -> Path:
    """Write ``data`` with the exact structure of an official MANO pickle (see above); ``replace``:
    entries to store as given instead (e.g. a broken chumpy object)."""
    buf = io.BytesIO()
    pickler = _Py2Pickler(buf)
    pickler.dump({**official_structure(data, seed), **(replace or {})})
    path = Path(path)
    path.write_bytes(buf.getvalue())
    return path
