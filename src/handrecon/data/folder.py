"""Your own unlabeled photos (``data=folder``): any images under a folder, with offline 2D detections.

Layout (``root`` = any folder)::

    <root>/**/*.jpg|*.jpeg|*.png      images, nested folders allowed (e.g. one folder of frames per video)
    <root>/detections.json            handrecon detections (handrecon.data.detections), image names = the
                                      path relative to root without its suffix ("clip1/000123"), as
                                      ``python -m handrecon.detect --images <root>`` writes them
    K (optional)                      a JSON file: one 3x3 matrix for every image, or {image name: 3x3}

Each image is cropped to a square box around its confident detected keypoints, ``crop_pad`` x
their extent (:func:`handrecon.detect.backends.box_from_xyxy`, the detector CLI's box), and resized
to ``image_size``. Intrinsics: the K file's, updated by the crop; without one, the crop gets
:func:`handrecon.geometry.camera.crop_intrinsics` (fx = fy = ``focal_ratio`` x crop side, centred),
as ``task=predict`` assumes for images of unknown intrinsics. An image whose detections say
``"side": "left"`` is flipped horizontally (keypoints and K with it) so the model sees a right hand.

Skipped and counted (one warning with the counts and the first names at start-up): images without
a detection, and images with fewer than ``min_keypoints`` keypoints of confidence >= ``conf_threshold``.
Unreadable images are substituted and counted at read time (:class:`handrecon.data.images.RobustDataset`).
There is no 3D ground truth: ``joints3d`` zeros with ``has_3d`` False, ``verts3d`` zeros (1, 3),
no mask; validation reports 2D metrics (see ``conf/data/folder.yaml``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from handrecon.data import transforms as T
from handrecon.data.detections import Detections
from handrecon.data.images import BadSampleCounter, DatasetFormatError, RobustDataset, read_rgb
from handrecon.geometry import camera
from handrecon.joints import NUM_JOINTS

__all__ = ["FolderDataset", "list_images", "load_intrinsics", "keypoint_box", "IMAGE_SUFFIXES", "DETECTIONS_FILE"]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png")
#: the detections file's default name inside the image folder
DETECTIONS_FILE = "detections.json"


def how_to_make_detections(root: Path, out: Path) -> str:
    return (
        f"Make it with `python -m handrecon.detect --images {root} --backend openpose --weights <hand_pose_model.pth> "
        f"--out {out}` (or --backend mediapipe --weights <hand_landmarker.task>, or --backend handrecon --weights "
        "<a trained .ckpt>), or set data.detections to the file's path."
    )


def list_images(root: str | os.PathLike) -> list[tuple[str, Path]]:
    """Every .jpg/.jpeg/.png under ``root`` (nested folders too; hidden files and folders skipped),
    sorted, as (name, path) with name = the path relative to ``root`` without its suffix, '/'-separated.
    Two files with the same name (``a.jpg`` and ``a.png`` in one folder) are an error."""
    root = Path(root)
    found: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            p = Path(dirpath) / f
            if f.startswith(".") or p.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            name = p.relative_to(root).with_suffix("").as_posix()
            if name in found:
                raise DatasetFormatError(f"{root}: two images share the name {name!r} ({found[name].name}, {p.name}); "
                                         "image names (paths without suffix) must be unique")
            found[name] = p
    return sorted(found.items())


def load_intrinsics(path: str | os.PathLike, names: Sequence[str]) -> dict[str, np.ndarray] | np.ndarray:
    """A K file: one 3x3 matrix (every image) -> (3, 3); or {image name: 3x3} -> dict, which must
    cover ``names``. Errors name the file and what was expected."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetFormatError(f"intrinsics file not found: {path} (data.K: a JSON 3x3 matrix or {{image name: 3x3}}; "
                                 "null: fx = fy = focal_ratio x crop side)")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetFormatError(f"intrinsics file {path} is not valid JSON: {e}") from None

    def as_K(v, where: str) -> np.ndarray:
        try:
            K = np.asarray(v, np.float64)
        except (TypeError, ValueError):
            K = np.zeros(0)
        if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[2, 2] == 0 or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise DatasetFormatError(f"{path}: {where} is not a 3x3 intrinsics matrix [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] "
                                     f"with fx, fy > 0 (got {v!r:.80})")
        return K / K[2, 2]

    if isinstance(doc, dict):
        Ks = {str(k): as_K(v, f"entry {k!r}") for k, v in doc.items()}
        missing = [n for n in names if n not in Ks]
        if missing:
            raise DatasetFormatError(f"{path}: {len(missing)} of {len(names)} images have no intrinsics "
                                     f"(first: {missing[:5]}); keys are image names (paths under data.root without suffix)")
        return Ks
    return as_K(doc, "the matrix")


def keypoint_box(xy: np.ndarray, conf: np.ndarray, conf_threshold: float, pad: float,
                 min_side: float = 16.0) -> tuple[tuple[float, float], float]:
    """Square crop box (centre, side) around the keypoints of confidence >= ``conf_threshold``:
    the detector CLI's box (:func:`handrecon.detect.backends.box_from_xyxy`) of their bounding
    rectangle, ``pad`` x its longer side (at least ``min_side`` px)."""
    from handrecon.detect.backends import box_from_xyxy

    pts = np.asarray(xy, np.float64)[np.asarray(conf) >= conf_threshold]
    if len(pts) == 0:
        raise ValueError("keypoint_box: no keypoint is confident enough to place a crop")
    (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
    half = 0.5 * min_side / pad
    cx, cy = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
    x0, x1 = min(x0, cx - half), max(x1, cx + half)
    y0, y1 = min(y0, cy - half), max(y1, cy + half)
    cx, cy, side = box_from_xyxy(x0, y0, x1, y1, pad=pad)
    return (cx, cy), side


class FolderDataset(RobustDataset):
    """The images of a folder with their offline detections, in the model's sample contract.

    root: the image folder. detections: handrecon detections JSON (default ``<root>/detections.json``).
    K: optional intrinsics file (see :func:`load_intrinsics`); None: ``focal_ratio`` x crop side.
    image_size: crop side. crop_pad: crop side / the confident keypoints' extent. conf_threshold /
    min_keypoints: images with fewer confident keypoints are skipped. flip_left: flip images whose
    detections say ``side: left``. group_by_folder: ``id_groups`` = the image's folder, so a
    train/val split keeps each folder (e.g. a video's frames) on one side. ids: positions in the
    list of usable images. index of a sample: that position; name: the image name.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        detections: str | os.PathLike | None = None,
        K: str | os.PathLike | None = None,
        focal_ratio: float = camera.FOCAL_RATIO,
        image_size: int = 224,
        crop_pad: float = 1.5,
        conf_threshold: float = 0.1,
        min_keypoints: int = 6,
        flip_left: bool = True,
        group_by_folder: bool = False,
        augment: T.Augment | dict | None = None,
        ids: Sequence[int] | np.ndarray | None = None,
        max_bad_fraction: float = 0.01,
    ) -> None:
        if root is None or str(root) in ("", "None", "???"):
            raise DatasetFormatError("data=folder needs data.root=<your image folder>")
        self.root = Path(root).expanduser()
        self.what = f"image folder {self.root}"
        if not self.root.is_dir():
            raise DatasetFormatError(f"{self.what}: not a directory (set data.root to the folder of your images)")
        self.image_size = int(image_size)
        if self.image_size < 8:
            raise ValueError(f"image_size must be >= 8 pixels, got {image_size}")
        self.focal_ratio, self.crop_pad = float(focal_ratio), float(crop_pad)
        if not (self.focal_ratio > 0 and self.crop_pad > 0):
            raise ValueError(f"focal_ratio and crop_pad must be > 0, got {focal_ratio} and {crop_pad}")
        self.conf_threshold, self.min_keypoints = float(conf_threshold), int(min_keypoints)
        if not 1 <= self.min_keypoints <= NUM_JOINTS:
            raise ValueError(f"min_keypoints must be in 1..{NUM_JOINTS}, got {min_keypoints}")
        self.flip_left, self.group_by_folder = bool(flip_left), bool(group_by_folder)
        self.augment = T.Augment.from_any(augment)
        self.max_bad_fraction = float(max_bad_fraction)

        images = list_images(self.root)
        if not images:
            raise DatasetFormatError(f"{self.what}: no images found (looked for {', '.join(IMAGE_SUFFIXES)} in it and "
                                     "its sub-folders)")
        self.detections_path = Path(detections).expanduser() if detections else self.root / DETECTIONS_FILE
        if not self.detections_path.is_file():
            raise DatasetFormatError(
                f"{self.what}: the 2D detections file {self.detections_path} does not exist. Training on your own "
                f"images uses offline 2D detections (21 keypoints + confidences per image). "
                f"{how_to_make_detections(self.root, self.detections_path)}"
            )
        self.detections = Detections.load(self.detections_path)
        self._select(images)
        self.intrinsics = None if K is None else load_intrinsics(K, [n for n, _ in self.items])
        self.K_path = None if K is None else Path(K)
        self._set_ids(ids)

    # ------------------------------------------------------------ which images
    def _select(self, images: list[tuple[str, Path]]) -> None:
        det = self.detections
        no_det = [n for n, _ in images if n not in det]
        listed = [(n, p) for n, p in images if n in det]
        if listed:
            _, conf = det.take([n for n, _ in listed])
            enough = (conf >= self.conf_threshold).sum(1) >= self.min_keypoints
        else:
            enough = np.zeros(0, bool)
        few = [n for (n, _), ok in zip(listed, enough) if not ok]
        self.items = [it for it, ok in zip(listed, enough) if ok]
        self.skipped = {"no_detection": len(no_det), "few_keypoints": len(few)}
        extra = len(det) - len(listed)
        if no_det or few:
            log.warning(
                "%s: %d of %d images skipped: %d without a detection in %s (first: %s), %d with fewer than %d keypoints "
                "of confidence >= %g (first: %s)", self.what, len(no_det) + len(few), len(images), len(no_det),
                self.detections_path, no_det[:3], len(few), self.min_keypoints, self.conf_threshold, few[:3],
            )  # fmt: skip
        if extra:
            log.warning("%s: %d detections in %s name no image of the folder (ignored)", self.what, extra, self.detections_path)
        if not self.items:
            raise DatasetFormatError(
                f"{self.what}: none of its {len(images)} images is usable: {len(no_det)} have no detection in "
                f"{self.detections_path} (names must be paths under the folder without suffix, e.g. {images[0][0]!r}; "
                f"the file names e.g. {det.names[:3]}), {len(few)} have fewer than {self.min_keypoints} keypoints of "
                f"confidence >= {self.conf_threshold}. {how_to_make_detections(self.root, self.detections_path)}"
            )
        self.names = [n for n, _ in self.items]
        self._xy, self._conf = det.take(self.names)
        self.sides = [det.side(n) for n in self.names]

    # ------------------------------------------------------------ indexing
    def _set_ids(self, ids) -> None:
        self.ids = self._validated_ids(ids, len(self.items))
        self.bad_files = BadSampleCounter(len(self.ids), self.max_bad_fraction, self.what)

    @property
    def id_groups(self) -> np.ndarray | None:
        """The folder of each usable image (``group_by_folder``; None otherwise or with one folder)."""
        if not self.group_by_folder:
            return None
        groups = np.array([n.rsplit("/", 1)[0] if "/" in n else "." for n in self.names])[self.ids]
        return groups if len(np.unique(groups)) > 1 else None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def num_left(self) -> int:
        return sum(1 for i in self.ids if self.sides[i] == "left")

    # ------------------------------------------------------------ samples
    def raw_sample(self, i: int) -> tuple[dict, dict]:
        k = int(self.ids[i])
        name, path = self.items[k]
        image = read_rgb(path)
        H, W = image.shape[:2]
        xy, conf = self._xy[k].astype(np.float64), self._conf[k].copy()
        K_full = None
        if self.intrinsics is not None:
            K_full = self.intrinsics[name] if isinstance(self.intrinsics, dict) else self.intrinsics
        if self.flip_left and self.sides[k] == "left":
            image = np.ascontiguousarray(image[:, ::-1])
            xy = camera.apply_homography(camera.hflip_matrix(W), xy)
            if K_full is not None:
                K_full = camera.mirror_K(K_full, W)
        center, side = keypoint_box(xy, conf, self.conf_threshold, self.crop_pad)
        crop = T.box_affine(center, side, self.image_size)
        if K_full is None:  # unknown intrinsics: the crop's K is crop_intrinsics; in full-image pixels:
            K_full = np.linalg.inv(crop) @ camera.crop_intrinsics(self.image_size, self.focal_ratio)
        raw = {
            "image": image, "K": K_full, "kp2d": xy, "kp2d_conf": conf,
            "joints3d": np.zeros((NUM_JOINTS, 3)), "verts3d": np.zeros((1, 3)), "mask": None, "is_right": True,
            "crop": crop, "center": np.asarray(center, np.float64),
        }  # fmt: skip
        return raw, {"has_3d": False, "name": name, "index": k, "appearance_weight": 1.0}

    def describe_skipped(self) -> str:
        s = self.skipped
        return f"{s['no_detection']} without detection, {s['few_keypoints']} with too few keypoints, {self.bad_files.count} unreadable"

    def __repr__(self) -> str:
        return (f"FolderDataset(root={str(self.root)!r}, samples={len(self)}, left={self.num_left}, image_size={self.image_size}, "
                f"K={str(self.K_path) if self.K_path else f'focal_ratio {self.focal_ratio}'!r}, "
                f"skipped=({self.describe_skipped()}), augment={self.augment is not None})")
