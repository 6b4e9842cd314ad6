"""FreiHAND (v2) reader.

Published layout (``root`` = the folder that ``training/`` and ``evaluation/`` branch off)::

    training/rgb/%08d.jpg       N x v images: sample i of version k is image i + k * N
                                (v = 4 versions: 0 green screen original, 1-3 new backgrounds; N = 32560)
    training/mask/%08d.jpg      hand masks of the N originals (valid for every version)
    training_K.json             (N, 3, 3) intrinsics
    training_xyz.json           (N, 21, 3) joints, metres, camera frame (OpenCV), FreiHAND order
    training_verts.json         (N, 778, 3) MANO vertices, metres, camera frame
    training_mano.json          (N, 1, 61) = 48 pose + 10 shape + 3 translation
    training_scale.json         (N,) metric length of a reference bone
    evaluation/rgb/%08d.jpg     3960 images, one version
    evaluation_K.json, evaluation_scale.json
    evaluation_xyz.json, evaluation_verts.json, evaluation_mano.json   (only in the released GT)
    detections/<split>.json     handrecon: offline 2D detections (handrecon.data.detections)

The number of versions is inferred (``#images / #K`` must be an integer in 1..4), so a dataset
written in this layout with one version (handrecon's synthetic set) reads the same way. Images
are used as given (224 x 224) by default; ``image_size`` resizes them (the identity at 224), and
``crop=True`` crops a square box around the hand (from detections, or from the projected 3D
joints with ``use_gt_2d_for_crop`` or where no detection is confident).

Unknown quantities in a sample: ``joints3d`` zeros (21, 3) with ``has_3d`` False; ``verts3d`` zeros
(1, 3) for every sample of the dataset when ``<split>_verts.json`` is absent (or
``load_verts=False``), so batches stay shape-consistent; ``mask`` zeros with ``has_mask`` False.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from handrecon.data import transforms as T
from handrecon.data.detections import Detections
from handrecon.data.images import (
    BadSampleCounter,
    CorruptImageError,
    DatasetFormatError,
    RobustDataset,
    check_detection_coverage,
    read_mask,
    read_rgb,
)
from handrecon.joints import NUM_JOINTS

__all__ = [
    "FreiHANDDataset", "FreiHANDAnnotations", "DatasetFormatError", "CorruptImageError",
    "load_split_annotations", "iter_images", "image_name", "SPLITS", "MAX_VERSIONS",
]  # fmt: skip

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("training", "evaluation")
MAX_VERSIONS = 4
#: sizes of the published dataset (informational; the reader infers sizes from the files)
PUBLISHED_SIZES = {"training": 32560, "evaluation": 3960}
#: filled in with the dataset's real root, split and detections path (images.DETECTIONS_KEYS_HINT follows)
HOW_TO_MAKE_DETECTIONS = (
    "Make them with `python -m handrecon.detect --images {root} --dataset freihand --split {split} "
    "--backend openpose --weights <hand_pose_model.pth> --out {out}`, or import "
    "S2HAND's published list with `python -m handrecon.detect --import-s2hand <list.json> --dataset freihand "
    "--split {split} --out {out}` (or point the dataset's `detections` option at the file)."
)


def image_name(index: int) -> str:
    """FreiHAND image id: the 8-digit file number (also the detections' image name)."""
    return f"{int(index):08d}"


# ---------------------------------------------------------------- annotations


@functools.lru_cache(maxsize=16)
def _json_array_cached(path: str, mtime_ns: int, size: int, dtype: str) -> np.ndarray:
    with open(path) as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise DatasetFormatError(f"{path} is not valid JSON: {e}") from None
    try:
        arr = np.asarray(data, dtype=dtype)
    except (ValueError, TypeError):
        raise DatasetFormatError(f"{path}: entries have inconsistent shapes; expected one array of numbers") from None
    arr.setflags(write=False)  # shared between datasets built from the same file
    return arr


def _load_json_array(path: Path, dtype: str = "float64") -> np.ndarray:
    st = path.stat()
    return _json_array_cached(str(path), st.st_mtime_ns, st.st_size, dtype)


def _check_shape(arr: np.ndarray, path: Path, n: int, tail: tuple[int | None, ...], what: str) -> np.ndarray:
    """Validate (n, *tail) (None in ``tail``: any size; trailing singleton axes are squeezed)."""
    a = arr
    if a.ndim == len(tail) + 2 and a.shape[1] == 1:  # e.g. mano (N, 1, 61)
        a = a[:, 0]
    exp = "(" + ", ".join(str(x) for x in (n,) + tuple("V" if t is None else t for t in tail)) + ")"
    ok = a.ndim == len(tail) + 1 and a.shape[0] == n and all(t is None or t == s for t, s in zip(tail, a.shape[1:]))
    if not ok:
        raise DatasetFormatError(f"{path}: {what} has shape {arr.shape}; expected {exp} (one entry per sample of the K file)")
    return a


@dataclass
class FreiHANDAnnotations:
    """Validated annotations of one split. Arrays are read-only and shared (cached per file)."""

    root: Path
    split: str
    K: np.ndarray  # (N, 3, 3)
    xyz: np.ndarray | None  # (N, 21, 3) metres, camera frame
    verts: np.ndarray | None  # (N, V, 3) metres, camera frame
    mano: np.ndarray | None  # (N, 61)
    scale: np.ndarray | None  # (N,)
    num_versions: int
    image_ext: str

    @property
    def num_ids(self) -> int:
        return len(self.K)

    @property
    def rgb_dir(self) -> Path:
        return self.root / self.split / "rgb"

    @property
    def mask_dir(self) -> Path:
        return self.root / self.split / "mask"

    def image_path(self, image_index: int) -> Path:
        return self.rgb_dir / f"{image_name(image_index)}{self.image_ext}"

    def mask_path(self, sample_id: int) -> Path:
        return self.mask_dir / f"{image_name(sample_id)}.jpg"


def _check_root(root: str | os.PathLike, split: str) -> Path:
    if split not in SPLITS:
        raise DatasetFormatError(f"FreiHAND split must be one of {SPLITS}, got {split!r}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetFormatError(
            f"FreiHAND root folder not found: {root} (expected the folder holding {split}/rgb/ and {split}_K.json; "
            "set data.root)"
        )
    return root


def _scan_images(root: Path, split: str, num_ids: int, k_path: Path) -> tuple[int, str]:
    """Count the split's images and infer the number of versions. Returns (versions, extension)."""
    rgb_dir = root / split / "rgb"
    if not rgb_dir.is_dir():
        raise DatasetFormatError(f"FreiHAND: image folder not found: {rgb_dir} (expected {split}/rgb/%08d.jpg under {root})")
    names = {e.name for e in os.scandir(rgb_dir) if e.is_file()}
    ext = ".jpg"
    n_img = sum(1 for n in names if n.endswith(ext))
    if n_img == 0 and any(n.endswith(".png") for n in names):
        ext = ".png"
        n_img = sum(1 for n in names if n.endswith(ext))
    if num_ids == 0:
        raise DatasetFormatError(f"{k_path}: holds no samples; expected a list of 3x3 intrinsics")
    v, rem = divmod(n_img, num_ids)
    if rem or not 1 <= v <= MAX_VERSIONS:
        raise DatasetFormatError(
            f"FreiHAND: {rgb_dir} holds {n_img} {ext} images but {k_path} has {num_ids} samples; expected "
            f"v x {num_ids} images with v (the number of versions) in 1..{MAX_VERSIONS} "
            f"(published: training 4 x {PUBLISHED_SIZES['training']}, evaluation {PUBLISHED_SIZES['evaluation']}). "
            "Is the download complete?"
        )
    if v > 1 and (split != "training" or v != MAX_VERSIONS):
        raise DatasetFormatError(
            f"FreiHAND: {rgb_dir} holds {n_img} {ext} images but {k_path} has {num_ids} samples ({v} per sample); "
            f"only the published training split has several versions of each sample (exactly {MAX_VERSIONS}). Are the "
            f"annotation files cut short (they cover {num_ids} of {n_img} images)?"
        )
    for i in range(v * num_ids):
        if f"{image_name(i)}{ext}" not in names:
            raise DatasetFormatError(
                f"FreiHAND: {rgb_dir / (image_name(i) + ext)} is missing; expected images "
                f"{image_name(0)}{ext} .. {image_name(v * num_ids - 1)}{ext} ({v} versions of {num_ids} samples)"
            )
    return v, ext


def _check_intrinsics(K: np.ndarray, k_path: Path) -> None:
    """Every K finite, K[2] = (0, 0, 1) up to scale, fx, fy > 0: else one error naming the first bad index."""
    finite = np.isfinite(K).all((1, 2))
    with np.errstate(all="ignore"):
        K = K / np.where(K[:, 2:3, 2:3] == 0, np.nan, K[:, 2:3, 2:3])
    ok = finite & np.isfinite(K).all((1, 2)) & (K[:, 0, 0] > 0) & (K[:, 1, 1] > 0) & (np.abs(K[:, 2, :2]) < 1e-9).all(-1)
    bad = np.flatnonzero(~ok)
    if len(bad):
        raise DatasetFormatError(f"{k_path}: intrinsics of sample {int(bad[0])} are invalid ({len(bad)} samples so); expected "
                                 "finite 3x3 matrices [[fx, s, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0 (not singular)")


def _check_finite(arr: np.ndarray, path: Path, what: str) -> None:
    bad = np.flatnonzero(~np.isfinite(arr.reshape(len(arr), -1)).all(-1))
    if len(bad):
        raise DatasetFormatError(f"{path}: the {what} of sample {int(bad[0])} are not finite (NaN or inf; "
                                 f"{len(bad)} samples so)")


def _image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of an image file, None when unreadable (then the readers skip and count it)."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    return None if img is None else (int(img.shape[1]), int(img.shape[0]))


def load_split_annotations(root: str | os.PathLike, split: str = "training", load_verts: bool = True) -> FreiHANDAnnotations:
    """Read and validate one split's annotation files and image folder.

    Missing root / missing K file / wrong shapes / image count mismatch raise one
    :class:`DatasetFormatError` naming the file and what was expected. ``<split>_xyz``,
    ``_verts``, ``_mano`` and ``_scale`` are optional (None when absent).
    """
    root = _check_root(root, split)
    k_path = root / f"{split}_K.json"
    if not k_path.is_file():
        raise DatasetFormatError(f"FreiHAND: {k_path} not found (expected the {split} intrinsics, a list of 3x3 matrices)")
    K = _load_json_array(k_path)
    n = len(K) if K.ndim >= 1 else 0
    if n == 0:
        raise DatasetFormatError(f"{k_path}: holds no samples; expected a list of 3x3 intrinsics")
    K = _check_shape(K, k_path, n, (3, 3), "the intrinsics list")
    _check_intrinsics(K, k_path)

    def optional(suffix: str, tail: tuple, what: str, dtype: str = "float64") -> np.ndarray | None:
        p = root / f"{split}_{suffix}.json"
        if not p.is_file():
            return None
        arr = _load_json_array(p, dtype)
        if arr.ndim == 0 or len(arr) != n:
            raise DatasetFormatError(f"{p}: {len(arr) if arr.ndim else 0} entries but {k_path} has {n}; expected one per sample")
        return _check_shape(arr, p, n, tail, what)

    xyz = optional("xyz", (NUM_JOINTS, 3), "the 3D joints")
    # float32: the published training_verts.json is 32560 x 778 x 3 (about 300 MB as float32)
    verts = optional("verts", (None, 3), "the vertices", "float32") if load_verts else None
    mano = optional("mano", (61,), "the MANO parameters (48 pose + 10 shape + 3 translation)")
    scale_p = root / f"{split}_scale.json"
    scale = None
    if scale_p.is_file():
        scale = _load_json_array(scale_p).reshape(-1)
        if len(scale) != n:
            raise DatasetFormatError(f"{scale_p}: {len(scale)} entries but {k_path} has {n}; expected one per sample")
    for arr, name, what in ((xyz, "xyz", "3D joints"), (verts, "verts", "vertices"), (mano, "mano", "MANO parameters"),
                            (scale, "scale", "scales")):
        if arr is not None:
            _check_finite(arr, root / f"{split}_{name}.json", what)
    if xyz is not None:
        behind = np.flatnonzero((xyz[..., 2] <= 0).any(-1))
        if len(behind):
            raise DatasetFormatError(f"{root / f'{split}_xyz.json'}: sample {int(behind[0])} has joints at z <= 0 (behind "
                                     f"the camera; {len(behind)} samples so); expected metres in the camera frame")
    versions, ext = _scan_images(root, split, n, k_path)
    return FreiHANDAnnotations(root, split, K, xyz, verts, mano, scale, versions, ext)


def iter_images(root: str | os.PathLike, split: str = "training") -> list[tuple[str, Path]]:
    """Every image of the split (all versions) as (name, path), name = the detections' image id."""
    root = _check_root(root, split)
    k_path = root / f"{split}_K.json"
    if not k_path.is_file():
        raise DatasetFormatError(f"FreiHAND: {k_path} not found (expected the {split} intrinsics, a list of 3x3 matrices)")
    n = len(_load_json_array(k_path))
    v, ext = _scan_images(root, split, n, k_path)
    rgb = root / split / "rgb"
    return [(image_name(i), rgb / f"{image_name(i)}{ext}") for i in range(v * n)]


# ---------------------------------------------------------------- dataset


class FreiHANDDataset(RobustDataset):
    """FreiHAND samples in the model's sample contract (see :mod:`handrecon.data.transforms`).

    root: dataset folder. split: 'training' | 'evaluation'. ids: subset of sample ids (0..N-1;
    every selected version of each id is used). detections: handrecon detections JSON (default
    ``<root>/detections/<split>.json``), required when ``detections_required`` (default: for the
    training split); absent optional detections give kp2d = kp2d_conf = 0. versions: which of
    the inferred versions to use (default all). original_weight / augmented_weight: the
    ``appearance_weight`` of version 0 (green screen) / versions 1-3. index: the image number
    (``id + version * N``), name its 8-digit form.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "training",
        ids: Sequence[int] | np.ndarray | None = None,
        detections: str | os.PathLike | None = None,
        detections_required: bool | None = None,
        image_size: int = 224,
        crop: bool = False,
        use_gt_2d_for_crop: bool = False,
        crop_pad: float = 1.3,
        conf_threshold: float = 0.1,
        augment: T.Augment | dict | None = None,
        versions: Sequence[int] | None = None,
        original_weight: float = 1.1,
        augmented_weight: float = 0.1,
        load_masks: bool = False,
        load_verts: bool = True,
        require_3d: bool = False,
        is_right: bool = True,
        max_bad_fraction: float = 0.01,
    ) -> None:
        self.ann = load_split_annotations(root, split, load_verts=load_verts)
        self.root, self.split = self.ann.root, split
        self.image_size = int(image_size)
        if self.image_size < 8:
            raise ValueError(f"image_size must be >= 8 pixels, got {image_size}")
        self.crop, self.use_gt_2d_for_crop = bool(crop), bool(use_gt_2d_for_crop)
        self.crop_pad, self.conf_threshold = float(crop_pad), float(conf_threshold)
        self.augment = T.Augment.from_any(augment)
        self.original_weight, self.augmented_weight = float(original_weight), float(augmented_weight)
        self.load_masks, self.is_right = bool(load_masks), bool(is_right)
        self.max_bad_fraction = float(max_bad_fraction)
        self.what = f"FreiHAND {split} ({self.root})"
        if require_3d and self.ann.xyz is None:
            raise DatasetFormatError(
                f"{self.what}: 3D joints are required (require_3d=True) but {self.root / (split + '_xyz.json')} is missing "
                "(the evaluation ground truth is a separate download)"
            )
        if self.load_masks and not self.ann.mask_dir.is_dir():
            log.warning("%s: load_masks=True but %s does not exist; has_mask is False for every sample", self.what, self.ann.mask_dir)
            self.load_masks = False

        nv = self.ann.num_versions
        if versions is None:
            versions = tuple(range(nv))
        versions = tuple(int(v) for v in versions)
        bad = [v for v in versions if not 0 <= v < nv]
        if bad or not versions or len(set(versions)) != len(versions):
            raise DatasetFormatError(
                f"{self.what}: versions {list(versions)} requested but {self.ann.rgb_dir} holds {nv} version(s) "
                f"(valid: distinct values in 0..{nv - 1})"
            )
        self.versions = versions

        self.detections: Detections | None = None
        self._load_detections(detections, split, detections_required, "training", HOW_TO_MAKE_DETECTIONS)
        self._set_ids(ids)

    # ------------------------------------------------------------ indexing
    def _set_ids(self, ids) -> None:
        N = self.ann.num_ids
        self.ids = ids = self._validated_ids(ids, N)
        # image number of each item, version-major (the file numbering)
        self._items = np.concatenate([ids + v * N for v in self.versions]) if len(ids) else np.zeros(0, np.int64)
        self._lookup_detections()
        self.bad_files = BadSampleCounter(len(self._items), self.max_bad_fraction, self.what)

    def _lookup_detections(self) -> None:
        n = len(self._items)
        self._det_xy = np.zeros((n, NUM_JOINTS, 2), np.float32)
        self._det_conf = np.zeros((n, NUM_JOINTS), np.float32)
        det = self.detections
        if det is None:
            return
        N = self.ann.num_ids
        names = [image_name(i) for i in self._items]
        # the versions of a sample share pose and camera: a detection of the original serves them all
        resolved = [n_ if n_ in det else image_name(int(i) % N) for n_, i in zip(names, self._items)]
        check_detection_coverage(det, resolved, self.detections_path, self.what)
        size = _image_size(self.ann.image_path(int(self._items[0]))) if len(self._items) else None
        if size is not None:  # the published images all have one size (224 x 224)
            det.check_inside(size[0], size[1], f"{self.detections_path}", names=sorted(set(resolved)))
        if resolved:
            self._det_xy[:], self._det_conf[:] = det.take(resolved)
        n_fallback = sum(a != b for a, b in zip(names, resolved))
        if n_fallback:
            log.info("%s: %d images use the detection of their original (version 0) image", self.what, n_fallback)

    id_groups = None  # FreiHAND samples are independent: split by id

    def __len__(self) -> int:
        return len(self._items)

    # ------------------------------------------------------------ samples
    def raw_sample(self, i: int) -> tuple[dict, dict]:
        """Full-image numpy sample of item i (before crop/augmentation) and its metadata."""
        img_index = int(self._items[i])
        N = self.ann.num_ids
        sid, version = img_index % N, img_index // N
        image = read_rgb(self.ann.image_path(img_index))
        H, W = image.shape[:2]
        K = self.ann.K[sid]
        has_3d = self.ann.xyz is not None
        joints = self.ann.xyz[sid] if has_3d else np.zeros((NUM_JOINTS, 3))
        verts = self.ann.verts[sid] if self.ann.verts is not None else np.zeros((1, 3))
        mask = None
        if self.load_masks:
            mp = self.ann.mask_path(sid)
            if mp.is_file():
                mask = read_mask(mp)
                if mask.shape != (H, W):
                    raise DatasetFormatError(f"{mp}: mask of shape {mask.shape} for an image of shape {(H, W)}")
        kp2d, conf = self._det_xy[i], self._det_conf[i]
        if self.crop:
            center, size = self._crop_box(kp2d, conf, joints if has_3d else None, K, W, H)
            crop = T.box_affine(center, size, self.image_size)
        else:
            center = ((W - 1) / 2.0, (H - 1) / 2.0)
            crop = T.full_image_affine(W, H, self.image_size)
        raw = {
            "image": image, "K": K, "kp2d": kp2d, "kp2d_conf": conf, "joints3d": joints, "verts3d": verts,
            "mask": mask, "is_right": self.is_right, "crop": crop, "center": np.asarray(center, np.float64),
        }  # fmt: skip
        meta = {
            "has_3d": has_3d, "has_verts": has_3d and self.ann.verts is not None,
            "name": image_name(img_index), "index": img_index,
            "appearance_weight": self.original_weight if version == 0 else self.augmented_weight,
        }  # fmt: skip
        return raw, meta

    def _crop_box(self, kp2d, conf, joints, K, W, H) -> tuple[tuple[float, float], float]:
        return T.hand_box(kp2d, conf, joints, K, W, H, self.conf_threshold, self.crop_pad, self.use_gt_2d_for_crop)

    def __repr__(self) -> str:
        return (
            f"FreiHANDDataset(root={str(self.root)!r}, split={self.split!r}, samples={len(self)}, ids={len(self.ids)}, "
            f"versions={list(self.versions)}, image_size={self.image_size}, crop={self.crop}, "
            f"augment={self.augment is not None}, detections={str(self.detections_path) if self.detections else None!r})"
        )
