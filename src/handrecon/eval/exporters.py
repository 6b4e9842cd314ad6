"""Exports: meshes (.obj / .ply with per-vertex colours; UV-textured .obj + .mtl + .png), FreiHAND
submissions, parameter JSON.

Meshes are written with trimesh (``process=False``, so vertex order and count are kept as
given). Colours may be floats in [0, 1] (a small overshoot, e.g. from lighting, is clipped) or
integers in [0, 255]; OBJ stores them as the common
``v x y z r g b`` extension (MeshLab and Blender read it), PLY as uchar red/green/blue(/alpha)
vertex properties.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import trimesh


def _np(x, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x)
    except Exception as exc:  # ragged nested lists etc.
        raise ValueError(f"{name}: cannot convert to an array ({exc})") from exc


def _colors_uint8(colors, n_verts: int, path) -> np.ndarray | None:
    if colors is None:
        return None
    c = _np(colors, f"{path}: colors")
    if c.shape != (n_verts, 3):
        raise ValueError(f"{path}: colors must have shape ({n_verts}, 3) (one RGB per vertex), got {c.shape}")
    if c.dtype == np.uint8:
        return c
    is_int = np.issubdtype(c.dtype, np.integer)
    c = c.astype(np.float64)
    if is_int:
        if c.min() < 0 or c.max() > 255:
            raise ValueError(f"{path}: integer colors must lie in [0, 255]")
        return c.astype(np.uint8)
    if not np.isfinite(c).all():
        raise ValueError(f"{path}: colors contain NaN or inf")
    if c.min() < -0.5 or c.max() > 1.5:
        raise ValueError(
            f"{path}: float colors must lie in [0, 1] (got [{c.min():.3g}, {c.max():.3g}]); "
            "pass uint8 for 0-255 values"
        )
    return np.round(np.clip(c, 0.0, 1.0) * 255.0).astype(np.uint8)  # small overshoot (lighting) clipped


def _mesh(path, verts, faces, colors) -> trimesh.Trimesh:
    v = _np(verts, f"{path}: verts").astype(np.float64)
    f = _np(faces, f"{path}: faces")
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"{path}: verts must have shape (V, 3), got {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError(f"{path}: verts contain NaN or inf")
    if f.ndim != 2 or f.shape[1] != 3 or not np.issubdtype(f.dtype, np.integer):
        raise ValueError(f"{path}: faces must be an integer array of shape (F, 3), got {f.dtype} {f.shape}")
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise ValueError(f"{path}: faces index vertices outside [0, {len(v) - 1}]")
    c = _colors_uint8(colors, len(v), path)
    return trimesh.Trimesh(vertices=v, faces=f.astype(np.int64), vertex_colors=c, process=False)


def save_obj(path: str | Path, verts, faces, colors=None) -> Path:
    """Write a Wavefront OBJ. verts: (V, 3); faces: (F, 3) int, 0-based; colors: (V, 3) | None."""
    path = Path(path)
    mesh = _mesh(path, verts, faces, colors)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(mesh.export(file_type="obj", include_color=colors is not None, include_normals=False))
    return path


def save_ply(path: str | Path, verts, faces, colors=None, *, binary: bool = True) -> Path:
    """Write a PLY (binary little-endian by default). verts: (V, 3); faces: (F, 3) int;
    colors: (V, 3) | None, stored as uchar red/green/blue (plus alpha 255)."""
    path = Path(path)
    mesh = _mesh(path, verts, faces, colors)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(mesh.export(file_type="ply", encoding="binary" if binary else "ascii"))
    return path


def save_textured_obj(path: str | Path, verts, faces, verts_uvs, faces_uvs, maps: dict) -> list[Path]:
    """Write a UV-textured mesh: ``<path>.obj`` (v, vt, f v/vt), ``<path>.mtl`` and one PNG per map.

    verts (V, 3); faces (F, 3) 0-based; verts_uvs (Vt, 2) in [0, 1] (OBJ convention: v = 0 at the
    bottom of the image); faces_uvs (F, 3) the UV vertex of each face corner; maps: {"diffuse" |
    "normal" | "spec": (T, T, 3) RGB float in [0, 1], row 0 = top}; "diffuse" is required. The MTL
    names them map_Kd, map_Bump and map_Ks (the NIMBLE reference's material; Blender and MeshLab
    read them). Returns the written paths (obj, mtl, pngs)."""
    import cv2

    path = Path(path).with_suffix(".obj")
    v = _np(verts, f"{path}: verts").astype(np.float64)
    f = _np(faces, f"{path}: faces")
    vt = _np(verts_uvs, f"{path}: verts_uvs").astype(np.float64)
    ft = _np(faces_uvs, f"{path}: faces_uvs")
    _mesh(path, v, f, None)  # the geometry checks
    if vt.ndim != 2 or vt.shape[1] != 2 or not np.isfinite(vt).all():
        raise ValueError(f"{path}: verts_uvs must be a finite (Vt, 2) array, got {vt.shape}")
    if ft.shape != f.shape or not np.issubdtype(ft.dtype, np.integer) or (ft.size and (ft.min() < 0 or ft.max() >= len(vt))):
        raise ValueError(f"{path}: faces_uvs must be integer {f.shape} indices into the {len(vt)} UV vertices")
    if "diffuse" not in maps:
        raise ValueError(f"{path}: maps must hold a 'diffuse' map, got {sorted(maps)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    keyword = {"diffuse": "map_Kd", "spec": "map_Ks", "normal": "map_Bump"}
    written = [path, path.with_suffix(".mtl")]
    mtl = ["newmtl material_0", "Ka 0.2 0.2 0.2", "Kd 0.8 0.8 0.8", "Ks 1.0 1.0 1.0", "Ns 0.0", "illum 2"]
    for name, img in maps.items():
        if name not in keyword:
            raise ValueError(f"{path}: unknown map {name!r}; expected {sorted(keyword)}")
        a = _np(img, f"{path}: {name} map").astype(np.float64)
        if a.ndim != 3 or a.shape[2] != 3 or not np.isfinite(a).all():
            raise ValueError(f"{path}: the {name} map must be a finite (H, W, 3) RGB image, got {a.shape}")
        png = path.with_name(f"{path.stem}_{name}.png")
        cv2.imwrite(str(png), np.round(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)[..., ::-1])
        mtl.append(f"{keyword[name]} {png.name}")
        written.append(png)
    path.with_suffix(".mtl").write_text("\n".join(mtl) + "\n")
    lines = [f"mtllib {path.with_suffix('.mtl').name}"]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in v]
    lines += [f"vt {a:.6f} {b:.6f}" for a, b in vt]
    lines.append("usemtl material_0")
    lines += [f"f {a + 1}/{ta + 1} {b + 1}/{tb + 1} {c + 1}/{tc + 1}" for (a, b, c), (ta, tb, tc) in zip(f.tolist(), ft.tolist())]
    path.write_text("\n".join(lines) + "\n")
    return written


def save_points_ply(path: str | Path, points) -> Path:
    """Write vertices without faces (a point cloud PLY), e.g. a mesh whose faces handrecon may not ship."""
    path = Path(path)
    p = _np(points, f"{path}: points").astype(np.float64)
    if p.ndim != 2 or p.shape[1] != 3 or not np.isfinite(p).all():
        raise ValueError(f"{path}: points must be a finite (N, 3) array, got {p.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(trimesh.PointCloud(p).export(file_type="ply"))
    return path


def _check_submission(path, joints, verts, n_joints: int = 21) -> tuple[np.ndarray, np.ndarray]:
    j = _np(joints, f"{path}: joints").astype(np.float64)
    v = _np(verts, f"{path}: verts").astype(np.float64)
    if j.ndim != 3 or j.shape[1:] != (n_joints, 3):
        raise ValueError(f"{path}: joints must have shape (N, {n_joints}, 3), got {j.shape}")
    if v.ndim != 3 or v.shape[2] != 3:
        raise ValueError(f"{path}: verts must have shape (N, V, 3), got {v.shape}")
    if len(v) != len(j):
        raise ValueError(f"{path}: {len(j)} joint sets but {len(v)} vertex sets")
    if not (np.isfinite(j).all() and np.isfinite(v).all()):
        raise ValueError(f"{path}: joints/verts contain NaN or inf")
    return j, v


def _dump_pair(path: Path, j: np.ndarray, v: np.ndarray, decimals: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fo:
        json.dump([np.round(j, decimals).tolist(), np.round(v, decimals).tolist()], fo)
    return path


def write_freihand_pred(path: str | Path, joints, verts, *, decimals: int = 6) -> Path:
    """Write a FreiHAND Codalab submission ``pred.json``: ``[xyz_list, verts_list]``.

    joints: (N, 21, 3) canonical (= FreiHAND) order, verts: (N, V, 3), both metres in the
    camera frame. Values are rounded to ``decimals`` (default 1 micrometre) to keep the file small.
    """
    path = Path(path)
    j, v = _check_submission(path, joints, verts)
    return _dump_pair(path, j, v, decimals)


def _jsonable(x: Any, key: str):
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, dict):
        return {str(k): _jsonable(v, f"{key}.{k}") for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v, f"{key}[{i}]") for i, v in enumerate(x)]
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    raise TypeError(f"save_params_json: value of {key!r} has unsupported type {type(x).__name__}")


def save_params_json(path: str | Path, params: dict[str, Any]) -> Path:
    """Write a dict of arrays / tensors / numbers / strings (nested dicts allowed) as JSON lists.
    E.g. ``{"pose": (48,), "shape": (10,), "scale": (), "trans": (3,), "K": (3, 3)}``."""
    path = Path(path)
    if not isinstance(params, dict):
        raise TypeError(f"save_params_json({path}): expected a dict, got {type(params).__name__}")
    data = {str(k): _jsonable(v, str(k)) for k, v in params.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fo:
        json.dump(data, fo, indent=1)
    return path


def load_params_json(path: str | Path) -> dict[str, Any]:
    """Read :func:`save_params_json` output; numeric lists come back as float64 / int arrays."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"params file not found: {path}")
    with open(path) as fi:
        data = json.load(fi)

    def conv(x):
        if isinstance(x, dict):
            return {k: conv(v) for k, v in x.items()}
        if isinstance(x, list):
            try:
                arr = np.asarray(x)
            except ValueError:
                return [conv(v) for v in x]
            return arr if arr.dtype.kind in "fiub" else [conv(v) for v in x]
        return x

    return {k: conv(v) for k, v in data.items()}
