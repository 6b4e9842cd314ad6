"""Loading MANO-layout model pickles without chumpy and without arbitrary code execution.

The official MANO files (``MANO_RIGHT.pkl``, ``MANO_LEFT.pkl``, v1.2) are Python 2 protocol-2 pickles
(byte strings, read with ``encoding='latin1'``): plain numpy arrays, ``J_regressor`` a
``scipy.sparse.csc.csc_matrix``, and ``shapedirs`` a chumpy expression: a ``chumpy.reordering.Select``
whose pickled state holds ``a`` (a ``chumpy.ch.Ch`` whose ``x`` is the 778 x 3 x 20 shape basis),
``idxs`` (23,340 flat indices) and ``preferred_shape`` (778, 3, 10), i.e. ``a.x[:, :, :10]``.
:func:`load_mano_pickle` reads them with a restricted unpickler: only numpy arrays / dtypes, scipy
sparse matrices and a few builtins may be constructed; every ``chumpy.*`` class maps to a stand-in
that keeps its pickled state, and the chumpy classes of the official files (:data:`CHUMPY_EVALUATORS`)
are then evaluated to plain numpy arrays. chumpy itself is never imported. Anything else in the file
is refused with a clear error (a pickle can otherwise run arbitrary code).
"""

from __future__ import annotations

import _compat_pickle
import builtins
import io
import os
import pickle
from pathlib import Path

import numpy as np

MANO_URL = "https://mano.is.tue.mpg.de"


class MANOFileNotFound(FileNotFoundError):
    """A MANO model file (or folder) given to handrecon does not exist."""


def mano_missing_message(path: str | os.PathLike) -> str:
    return (
        f"MANO model file not found: {path}\n"
        "MANO is the licensed hand model of Romero et al. (Max Planck Institute for Intelligent Systems); "
        "handrecon cannot ship it. Register and download it at "
        f"{MANO_URL}, put MANO_RIGHT.pkl (and MANO_LEFT.pkl) in a folder and pass "
        "`hand_model=mano hand_model.path=/that/folder` (or the path of the .pkl file itself). "
        "The default `hand_model=openhand` (handrecon's own open hand model) needs no download."
    )


class ChumpyStandIn:
    """Takes the place of a chumpy object while unpickling; keeps the pickled state (chumpy pickles
    its ``__dict__`` less two weak-reference caches)."""

    chumpy_class = "chumpy.?"

    def __init__(self, *args, **kwargs):
        self._args = args

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            state = state[0] or {}
        self.__dict__["_state"] = state if isinstance(state, dict) else {"_raw": state}

    def value(self, key: str) -> np.ndarray:
        """The array this chumpy object stands for (see :data:`CHUMPY_EVALUATORS`)."""
        evaluate = CHUMPY_EVALUATORS.get(self.chumpy_class)
        if evaluate is None:
            raise pickle.UnpicklingError(
                f"MANO pickle entry {key!r} is a chumpy expression of class {self.chumpy_class}, which handrecon "
                f"does not evaluate; the official MANO files hold only {sorted(CHUMPY_EVALUATORS)}"
            )
        return evaluate(self.__dict__.get("_state", {}), key)


def _chumpy_value(obj, key: str) -> np.ndarray:
    return obj.value(key) if isinstance(obj, ChumpyStandIn) else np.asarray(obj)


def _state_item(state: dict, name: str, key: str, cls: str):
    if name not in state:
        raise pickle.UnpicklingError(f"MANO pickle entry {key!r} ({cls}) has no {name!r} in its pickled state "
                                     f"(found {sorted(state)})")
    return state[name]


def _eval_ch(state: dict, key: str) -> np.ndarray:
    """chumpy.ch.Ch: a plain array, its value is ``x``."""
    return _chumpy_value(_state_item(state, "x", key, "chumpy.ch.Ch"), key)


def _eval_select(state: dict, key: str) -> np.ndarray:
    """chumpy.reordering.Select (what indexing a chumpy array records): ``a.ravel()[idxs]``, reshaped
    to ``preferred_shape`` when the state has one (chumpy's Select.compute_r)."""
    cls = "chumpy.reordering.Select"
    a = _chumpy_value(_state_item(state, "a", key, cls), key)
    idxs = np.asarray(_state_item(state, "idxs", key, cls)).ravel()
    if idxs.dtype.kind not in "iu":
        raise pickle.UnpicklingError(f"MANO pickle entry {key!r} ({cls}): idxs must be integers, got {idxs.dtype}")
    if idxs.size and (idxs.min() < 0 or idxs.max() >= a.size):
        raise pickle.UnpicklingError(f"MANO pickle entry {key!r} ({cls}): idxs range {idxs.min()}..{idxs.max()} "
                                     f"lies outside its array of {a.size} values (shape {a.shape})")
    out = a.ravel()[idxs]
    shape = state.get("preferred_shape")
    if shape is not None:
        shape = tuple(int(s) for s in shape)
        if int(np.prod(shape)) != out.size:
            raise pickle.UnpicklingError(f"MANO pickle entry {key!r} ({cls}): {out.size} selected values cannot take "
                                         f"its preferred_shape {shape}")
        out = out.reshape(shape)
    return out


#: every chumpy class that the official MANO files contain, and how its value is computed from its
#: pickled state (read from MANO_RIGHT.pkl's opcodes: shapedirs is a Select over a Ch)
CHUMPY_EVALUATORS = {"chumpy.ch.Ch": _eval_ch, "chumpy.reordering.Select": _eval_select}


_STANDINS: dict[tuple[str, str], type] = {}


def _standin_class(module: str, name: str) -> type:
    key = (module, name)
    if key not in _STANDINS:
        _STANDINS[key] = type(f"ChumpyStandIn_{name}", (ChumpyStandIn,), {"chumpy_class": f"{module}.{name}"})
    return _STANDINS[key]


def _numpy_core():
    try:
        from numpy._core import multiarray, numeric  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray, numeric
    return multiarray, numeric


_BUILTINS = {"object", "set", "frozenset", "complex", "slice", "bytearray", "bytes", "list", "tuple", "dict",
             "str", "int", "float", "bool"}
_SPARSE = {"csc_matrix", "csr_matrix", "coo_matrix", "lil_matrix", "dok_matrix", "bsr_matrix", "dia_matrix",
           "csc_array", "csr_array", "coo_array"}


class RestrictedUnpickler(pickle.Unpickler):
    """pickle.Unpickler that only constructs whitelisted classes (see module doc)."""

    def find_class(self, module: str, name: str):
        # Python 2 names (copy_reg, __builtin__, ...); no Python 3 module name is a key of these maps
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        if module == "chumpy" or module.startswith("chumpy."):
            return _standin_class(module, name)
        if module == "copyreg" and name in ("_reconstructor", "__newobj__"):
            import copyreg

            return getattr(copyreg, name)
        if module == "_codecs" and name == "encode":  # bytes in protocol-2 pickles written by Python 3
            import _codecs

            return _codecs.encode
        if module == "builtins" and name in _BUILTINS:
            return getattr(builtins, name)
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in ("_reconstruct", "scalar"):
            return getattr(_numpy_core()[0], name)
        if module in ("numpy.core.numeric", "numpy._core.numeric") and name == "_frombuffer":
            return getattr(_numpy_core()[1], name)
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if module == "numpy.dtypes" and name.endswith("DType"):
            return getattr(np.dtypes, name)
        if (module == "scipy.sparse" or module.startswith("scipy.sparse.")) and name in _SPARSE:
            import scipy.sparse

            return getattr(scipy.sparse, name)
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name} from a MANO pickle: only numpy arrays, scipy sparse matrices "
            "and chumpy arrays are allowed in a hand model file"
        )


def _to_plain(key: str, value):
    if isinstance(value, ChumpyStandIn):
        return value.value(key)
    if isinstance(value, bytes):
        return value.decode("latin1")
    return value


def load_mano_pickle(path: str | os.PathLike) -> dict:
    """Read a MANO-layout pickle -> dict of numpy arrays (scipy sparse for ``J_regressor``), strings
    and lists. chumpy objects become numpy arrays (their values). Python 2 pickles are read with
    encoding='latin1'.

    Raises :class:`MANOFileNotFound` (a FileNotFoundError) with download instructions when ``path``
    does not exist, and ``pickle.UnpicklingError`` for content outside the whitelist.
    """
    path = Path(path)
    if not path.is_file():
        raise MANOFileNotFound(mano_missing_message(path))
    with open(path, "rb") as fh:
        raw = fh.read()
    try:
        data = RestrictedUnpickler(io.BytesIO(raw), encoding="latin1").load()
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a dict of model arrays (MANO layout), got {type(data).__name__}")
        return {(k.decode("latin1") if isinstance(k, bytes) else k): _to_plain(str(k), v) for k, v in data.items()}
    except pickle.UnpicklingError as err:
        raise pickle.UnpicklingError(f"{path}: {err}") from err


def resolve_model_file(path: str | os.PathLike, side: str) -> Path:
    """A MANO file path, or a folder holding MANO_RIGHT.pkl / MANO_LEFT.pkl -> the file for ``side``."""
    if side not in ("right", "left"):
        raise ValueError(f"hand_model.side must be 'right' or 'left', got {side!r}")
    p = Path(os.path.expanduser(str(path)))
    if p.is_dir():
        p = p / f"MANO_{side.upper()}.pkl"
    if not p.is_file():
        raise MANOFileNotFound(mano_missing_message(p))
    return p
