"""Loading MANO-layout model pickles without chumpy and without arbitrary code execution.

The official MANO files (``MANO_RIGHT.pkl``, ``MANO_LEFT.pkl``) are Python 2 pickles in which some
arrays (``shapedirs``) are chumpy ``Ch`` objects. :func:`load_mano_pickle` reads them with a
restricted unpickler: only numpy arrays / dtypes, scipy sparse matrices and a few builtins may be
constructed; every ``chumpy.*`` class maps to a stand-in whose pickled state (its ``x`` array)
becomes a plain numpy array. chumpy itself is never imported. Anything else in the file is refused
with a clear error (a pickle can otherwise run arbitrary code).
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
    """Takes the place of any chumpy object while unpickling; keeps the pickled state."""

    chumpy_class = "chumpy.?"

    def __init__(self, *args, **kwargs):
        self._args = args

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            state = state[0] or {}
        self.__dict__["_state"] = state if isinstance(state, dict) else {"_raw": state}

    def value(self, key: str) -> np.ndarray:
        state = self.__dict__.get("_state", {})
        if "x" in state:
            x = state["x"]
            return x.value(key) if isinstance(x, ChumpyStandIn) else np.asarray(x)
        raise pickle.UnpicklingError(
            f"MANO pickle entry {key!r} is a chumpy expression ({self.chumpy_class}) without a stored "
            "value; only plain chumpy arrays (chumpy.ch.Ch with an 'x' array) can be read without chumpy"
        )


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
    and lists. chumpy arrays become numpy arrays. Python 2 pickles are read with encoding='latin1'.

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
    except pickle.UnpicklingError as err:
        raise pickle.UnpicklingError(f"{path}: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a dict of model arrays (MANO layout), got {type(data).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): _to_plain(str(k), v) for k, v in data.items()}


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
