"""HO3D (v2 / v3) reader.

Published layout (``root`` = the folder that ``train/`` and ``evaluation/`` branch off)::

    train.txt, evaluation.txt          one "<sequence>/<frame>" per line (frame: "0000", ...)
    <split>/<seq>/rgb/<frame>.png      640 x 480 RGB (.png in v2, .jpg in v3; detected)
    <split>/<seq>/meta/<frame>.pkl     Python-2 pickle (read with encoding='latin1'):
        camMat (3, 3); train: handPose (48), handBeta (10), handTrans (3), handJoints3D (21, 3);
        evaluation: handJoints3D (3,) = the root joint only, handBoundingBox [x0, y0, x1, y1];
        object fields (objRot, objTrans, objName, ...; may be None)
    detections/<split>.json            handrecon: offline 2D detections, names "<seq>/<frame>"

3D annotations are in OpenGL axes (y up, z backwards: the hand has z < 0) and in "MANO + tips"
joint order; :func:`ho3d_joints_to_canonical` is THE conversion to handrecon's OpenCV camera
frame and FreiHAND order (applied once, on load); :func:`canonical_to_ho3d_joints` converts back
for exports. Images are cropped around the hand (from detections on train, from
``handBoundingBox`` on evaluation) and resized to ``image_size``; K is updated by the crop.

Unknown quantities: ``joints3d`` zeros with ``has_3d`` False (evaluation split, or a frame
without hand annotation); ``verts3d`` zeros (1, 3) for every sample (HO3D stores MANO
parameters, not vertices); ``mask`` zeros with ``has_mask`` False.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from handrecon.data import transforms as T
from handrecon.data.detections import Detections
from handrecon.data.images import (
    BadSampleCounter,
    CorruptImageError,
    DatasetFormatError,
    RobustDataset,
    check_detection_coverage,
    read_rgb,
)
from handrecon.geometry import camera
from handrecon.joints import CANONICAL_TO_HO3D, HO3D_TO_CANONICAL, NUM_JOINTS, reorder

__all__ = [
    "HO3DDataset", "ho3d_joints_to_canonical", "canonical_to_ho3d_joints", "opengl_to_opencv",
    "read_split_list", "read_meta", "iter_images", "DatasetFormatError", "CorruptImageError", "SPLITS", "VERSIONS",
]  # fmt: skip

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "evaluation")
VERSIONS: dict[str, str] = {"v2": ".png", "v3": ".jpg"}
#: OpenGL camera axes (x right, y up, z backwards) <-> OpenCV (x right, y down, z forward)
OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0])
#: filled in with the dataset's real root, version, split and detections path (images.DETECTIONS_KEYS_HINT follows)
HOW_TO_MAKE_DETECTIONS = (
    "Make them with `python -m handrecon.detect --images {root} --dataset ho3d --ho3d-version {version} "
    "--split {split} --backend openpose --weights <hand_pose_model.pth> --out {out}` "
    "(image names '<sequence>/<frame>'), or point the dataset's `detections` option at the file."
)


# ---------------------------------------------------------------- the one conversion


def opengl_to_opencv(points: np.ndarray) -> np.ndarray:
    """(..., 3) points in OpenGL camera axes -> OpenCV axes (y and z negated; its own inverse)."""
    return np.asarray(points, np.float64) * np.array([1.0, -1.0, -1.0])


def ho3d_joints_to_canonical(joints: np.ndarray) -> np.ndarray:
    """HO3D ``handJoints3D`` (..., 21, 3), OpenGL axes, MANO+tips order -> (..., 21, 3) OpenCV
    camera frame (z > 0 in front of the camera), handrecon's canonical (FreiHAND) order."""
    j = np.asarray(joints, np.float64)
    if j.shape[-2:] != (NUM_JOINTS, 3):
        raise ValueError(f"HO3D handJoints3D must be (..., 21, 3), got {j.shape}")
    return reorder(opengl_to_opencv(j), HO3D_TO_CANONICAL, axis=-2)


def canonical_to_ho3d_joints(joints: np.ndarray) -> np.ndarray:
    """Inverse of :func:`ho3d_joints_to_canonical` (for HO3D submissions)."""
    j = np.asarray(joints, np.float64)
    if j.shape[-2:] != (NUM_JOINTS, 3):
        raise ValueError(f"canonical joints must be (..., 21, 3), got {j.shape}")
    return reorder(opengl_to_opencv(j), CANONICAL_TO_HO3D, axis=-2)


# ---------------------------------------------------------------- files


def _check_root(root: str | os.PathLike, split: str) -> Path:
    if split not in SPLITS:
        raise DatasetFormatError(f"HO3D split must be one of {SPLITS}, got {split!r}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetFormatError(
            f"HO3D root folder not found: {root} (expected the folder holding {split}.txt and {split}/; set data.root)"
        )
    return root


def read_split_list(root: str | os.PathLike, split: str) -> list[str]:
    """The lines "<seq>/<frame>" of ``<root>/<split>.txt`` (blank lines ignored)."""
    root = _check_root(root, split)
    path = root / f"{split}.txt"
    if not path.is_file():
        raise DatasetFormatError(f"HO3D: {path} not found (expected one '<sequence>/<frame>' per line)")
    names = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    bad = [n for n in names if n.count("/") != 1 or not all(n.split("/"))]
    if bad:
        raise DatasetFormatError(f"HO3D: {path}: lines must read '<sequence>/<frame>', got e.g. {bad[:3]}")
    if not names:
        raise DatasetFormatError(f"HO3D: {path} lists no frames")
    if len(set(names)) != len(names):
        raise DatasetFormatError(f"HO3D: {path} lists some frames twice")
    return names


def read_meta(path: str | os.PathLike) -> dict:
    """One HO3D annotation pickle (Python-2 pickles need encoding='latin1')."""
    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(f"HO3D: annotation file not found: {path} (expected <split>/<seq>/meta/<frame>.pkl)")
    try:
        with open(path, "rb") as f:
            meta = pickle.load(f, encoding="latin1")
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a damaged file
        raise DatasetFormatError(f"HO3D: cannot read annotation file {path}: {type(e).__name__}: {e}") from None
    if not isinstance(meta, dict):
        raise DatasetFormatError(f"HO3D: {path} holds a {type(meta).__name__}; expected a dict of annotations")
    return meta


def _meta_array(meta: dict, key: str, shape: tuple[int, ...], path: Path, optional: bool = False) -> np.ndarray | None:
    v = meta.get(key)
    if v is None:
        if optional:
            return None
        raise DatasetFormatError(f"HO3D: {path} has no {key!r}; expected an array of shape {shape}")
    a = np.asarray(v, np.float64)
    if a.size == int(np.prod(shape)) and a.shape != shape:
        a = a.reshape(shape)
    if a.shape != shape:
        raise DatasetFormatError(f"HO3D: {path}: {key!r} has shape {a.shape}; expected {shape}")
    return a


def _image_ext(root: Path, split: str, first: str, version: str) -> str:
    seq, frame = first.split("/")
    rgb = root / split / seq / "rgb"
    order = [VERSIONS[version]] + [e for e in VERSIONS.values() if e != VERSIONS[version]]
    for ext in order:
        if (rgb / f"{frame}{ext}").is_file():
            if ext != VERSIONS[version]:
                log.warning("HO3D %s: images are %s although version=%s (expected %s); reading %s",
                            split, ext, version, VERSIONS[version], ext)
            return ext
    raise DatasetFormatError(
        f"HO3D: image of the first listed frame not found: {rgb / (frame + order[0])} "
        f"(nor {rgb / (frame + order[1])}); expected {split}/<seq>/rgb/<frame>{VERSIONS[version]} for HO3D {version}"
    )


def iter_images(root: str | os.PathLike, split: str = "train", version: str = "v2") -> list[tuple[str, Path]]:
    """Every listed image of the split as (name "<seq>/<frame>", path)."""
    if version not in VERSIONS:
        raise DatasetFormatError(f"HO3D version must be one of {sorted(VERSIONS)}, got {version!r}")
    root = _check_root(root, split)
    names = read_split_list(root, split)
    ext = _image_ext(root, split, names[0], version)
    return [(n, root / split / n.split("/")[0] / "rgb" / f"{n.split('/')[1]}{ext}") for n in names]


# ---------------------------------------------------------------- dataset


class HO3DDataset(RobustDataset):
    """HO3D samples in the model's sample contract (see :mod:`handrecon.data.transforms`).

    root: dataset folder. split: 'train' | 'evaluation'. version: 'v2' | 'v3'. ids: subset of
    line numbers of ``<split>.txt``. detections: handrecon detections JSON (default
    ``<root>/detections/<split>.json``), required when ``detections_required`` (default: on
    train). The crop box is a square ``crop_pad`` x the hand's extent: from confident detections
    (train; from the projected 3D joints with ``use_gt_2d_for_crop`` or when no detection is
    confident) or from ``handBoundingBox`` (evaluation). index: the line number, name "<seq>/<frame>".
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        version: str = "v2",
        ids: Sequence[int] | np.ndarray | None = None,
        detections: str | os.PathLike | None = None,
        detections_required: bool | None = None,
        image_size: int = 224,
        crop_pad: float = 1.5,
        use_gt_2d_for_crop: bool = False,
        conf_threshold: float = 0.1,
        augment: T.Augment | dict | None = None,
        require_3d: bool = False,
        max_bad_fraction: float = 0.01,
    ) -> None:
        if version not in VERSIONS:
            raise DatasetFormatError(f"HO3D version must be one of {sorted(VERSIONS)}, got {version!r}")
        self.root = _check_root(root, split)
        self.split, self.version = split, version
        self.what = f"HO3D {version} {split} ({self.root})"
        self.names = read_split_list(self.root, split)
        self.sequences = np.array([n.split("/")[0] for n in self.names])
        for seq in sorted(set(self.sequences.tolist())):
            for sub in ("rgb", "meta"):
                d = self.root / split / seq / sub
                if not d.is_dir():
                    raise DatasetFormatError(
                        f"{self.what}: folder {d} not found; {split}.txt lists frames of sequence {seq!r} "
                        f"(expected {split}/{seq}/rgb/ and {split}/{seq}/meta/)"
                    )
        self.image_ext = _image_ext(self.root, split, self.names[0], version)
        self._check_listed_files()
        self._check_annotations()
        self.image_size = int(image_size)
        if self.image_size < 8:
            raise ValueError(f"image_size must be >= 8 pixels, got {image_size}")
        self.crop_pad, self.use_gt_2d_for_crop = float(crop_pad), bool(use_gt_2d_for_crop)
        self.conf_threshold = float(conf_threshold)
        self.augment = T.Augment.from_any(augment)
        self.require_3d = bool(require_3d)
        if self.require_3d and split == "evaluation":
            raise DatasetFormatError(f"{self.what}: require_3d=True, but the HO3D evaluation split has only the root joint")
        self.max_bad_fraction = float(max_bad_fraction)

        self.detections: Detections | None = None
        self._load_detections(detections, split, detections_required, "train", HOW_TO_MAKE_DETECTIONS)
        self._set_ids(ids)

    def _check_listed_files(self) -> None:
        """Every frame of ``<split>.txt`` has its annotation file (one listing per sequence folder, not
        a stat per frame); one error lists the misses. (A missing image is a bad image, counted and
        substituted in training under ``max_bad_fraction``; task=evaluate fails on it.)"""
        listing: dict[str, set[str]] = {}
        missing: list[str] = []
        for name in self.names:
            seq, frame = name.split("/")
            if seq not in listing:
                listing[seq] = {e.name for e in os.scandir(self.root / self.split / seq / "meta")}
            if f"{frame}.pkl" not in listing[seq]:
                missing.append(f"{self.split}/{seq}/meta/{frame}.pkl")
        if missing:
            raise DatasetFormatError(
                f"{self.what}: {len(missing)} of {len(self.names)} frames listed in {self.root / (self.split + '.txt')} "
                f"have no annotation file: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''} "
                f"(each listed frame needs {self.split}/<seq>/meta/<frame>.pkl)"
            )

    def _check_annotations(self) -> None:
        """Read every listed frame's annotation once at start-up: its camMat must be a valid
        intrinsic matrix and its handJoints3D (train) finite, else one error naming the file (not a
        NaN found mid-epoch). One small pickle per frame: seconds for HO3D's tens of thousands."""
        from handrecon.data.freihand import _check_intrinsics

        for line, name in enumerate(self.names):
            _, meta_path = self.paths_of(name)
            meta = read_meta(meta_path)
            K = _meta_array(meta, "camMat", (3, 3), meta_path)
            try:
                _check_intrinsics(K[None].astype(np.float64), meta_path)
            except DatasetFormatError:
                raise DatasetFormatError(f"{self.what}: {meta_path} (frame {line} of {self.split}.txt): camMat {K.tolist()} "
                                         "is not a valid intrinsic matrix; expected finite [[fx, 0, cx], [0, fy, cy], "
                                         "[0, 0, 1]] with fx, fy > 0") from None
            if self.split == "train":
                j = _meta_array(meta, "handJoints3D", (NUM_JOINTS, 3), meta_path, optional=True)
                if j is not None and not np.isfinite(j).all():
                    raise DatasetFormatError(f"{self.what}: {meta_path} (frame {line} of {self.split}.txt): handJoints3D "
                                             "holds NaN or inf; expected 21 finite 3D joints in metres")

    # ------------------------------------------------------------ indexing
    def _set_ids(self, ids) -> None:
        self.ids = ids = self._validated_ids(ids, len(self.names))
        self._det_xy = np.zeros((len(ids), NUM_JOINTS, 2), np.float32)
        self._det_conf = np.zeros((len(ids), NUM_JOINTS), np.float32)
        if self.detections is not None and len(ids):
            names = [self.names[i] for i in ids]
            check_detection_coverage(self.detections, names, self.detections_path, self.what)
            self._det_xy[:], self._det_conf[:] = self.detections.take(names)
        self.bad_files = BadSampleCounter(len(ids), self.max_bad_fraction, self.what)

    @property
    def id_groups(self) -> np.ndarray:
        """Sequence of each id in ``all_ids``: train/val splits keep whole sequences apart."""
        return self.sequences[self.ids]

    def __len__(self) -> int:
        return len(self.ids)

    # ------------------------------------------------------------ samples
    def paths(self, line: int) -> tuple[Path, Path]:
        return self.paths_of(self.names[line])

    def paths_of(self, name: str) -> tuple[Path, Path]:
        seq, frame = name.split("/")
        base = self.root / self.split / seq
        return base / "rgb" / f"{frame}{self.image_ext}", base / "meta" / f"{frame}.pkl"

    def raw_sample(self, i: int) -> tuple[dict, dict]:
        line = int(self.ids[i])
        rgb_path, meta_path = self.paths(line)
        meta = read_meta(meta_path)
        K = _meta_array(meta, "camMat", (3, 3), meta_path)
        joints, bbox = None, None
        if self.split == "train":
            j = _meta_array(meta, "handJoints3D", (NUM_JOINTS, 3), meta_path, optional=True)
            if j is not None:
                joints = ho3d_joints_to_canonical(j)
            elif self.require_3d:
                raise DatasetFormatError(f"{self.what}: {meta_path} has no handJoints3D but require_3d=True")
        else:
            bbox = _meta_array(meta, "handBoundingBox", (4,), meta_path, optional=True)
        image = read_rgb(rgb_path)
        H, W = image.shape[:2]
        kp2d, conf = self._det_xy[i], self._det_conf[i]
        center, size = self._crop_box(kp2d, conf, joints, bbox, K, W, H)
        raw = {
            "image": image, "K": K, "kp2d": kp2d, "kp2d_conf": conf,
            "joints3d": joints if joints is not None else np.zeros((NUM_JOINTS, 3)),
            "verts3d": np.zeros((1, 3)), "mask": None, "is_right": True,
            "crop": T.box_affine(center, size, self.image_size), "center": np.asarray(center, np.float64),
        }  # fmt: skip
        meta_out = {"has_3d": joints is not None, "has_verts": False, "name": self.names[line], "index": line,
                    "appearance_weight": 1.0}
        return raw, meta_out

    def _crop_box(self, kp2d, conf, joints, bbox, K, W, H) -> tuple[tuple[float, float], float]:
        if bbox is not None:
            x0, y0, x1, y1 = (float(v) for v in bbox)
            if x1 > x0 and y1 > y0:
                pts = np.array([[x0, y0], [x1, y1]])
                return camera.square_box_from_points(pts, pad=self.crop_pad)
        if conf.max(initial=0.0) < self.conf_threshold and joints is None:
            log.debug("%s: no box for sample (no bbox, detection or 3D joints); using the whole image", self.what)
        return T.hand_box(kp2d, conf, joints, K, W, H, self.conf_threshold, self.crop_pad, self.use_gt_2d_for_crop)

    def __repr__(self) -> str:
        return (
            f"HO3DDataset(root={str(self.root)!r}, split={self.split!r}, version={self.version!r}, samples={len(self)}, "
            f"image_size={self.image_size}, augment={self.augment is not None}, "
            f"detections={str(self.detections_path) if self.detections else None!r})"
        )
