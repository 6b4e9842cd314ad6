"""Small MANO-layout model files for tests (no MANO data): the official pickle layout, with or without
chumpy objects. The chumpy objects are written through a throw-away fake ``chumpy`` module that is
removed from ``sys.modules`` right after writing, so loading proves that chumpy is never needed."""

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

    class Select:  # a chumpy expression: no stored value
        def __init__(self, a):
            self.a = a

        def __getstate__(self):
            return {"a": self.a, "idxs": np.arange(3)}

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    Select.__module__, Select.__qualname__ = "chumpy.reordering", "Select"
    ch.Ch, reordering.Select, chumpy.ch, chumpy.reordering = Ch, Select, ch, reordering
    sys.modules.update({"chumpy": chumpy, "chumpy.ch": ch, "chumpy.reordering": reordering})
    return Ch, Select


def _remove_fake_chumpy():
    for name in ("chumpy", "chumpy.ch", "chumpy.reordering"):
        sys.modules.pop(name, None)


def write_model(data: dict, path, chumpy_keys=(), expression_keys=(), protocol: int = 2) -> Path:
    """Pickle ``data`` like the official files: ``chumpy_keys`` become chumpy.ch.Ch arrays,
    ``expression_keys`` chumpy expressions without a value (chumpy.reordering.Select)."""
    path = Path(path)
    out = dict(data)
    if chumpy_keys or expression_keys:
        Ch, Select = _install_fake_chumpy()
        try:
            for k in chumpy_keys:
                out[k] = Ch(data[k])
            for k in expression_keys:
                out[k] = Select(Ch(data[k]))
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
