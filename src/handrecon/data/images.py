"""Robust reading for the dataset readers: images, the bad-file policy, detections, a base Dataset.

:func:`read_rgb` / :func:`read_mask` decode with OpenCV from the file's bytes and raise
:class:`CorruptImageError` (naming the file and the reason) for a missing, empty, undecodable or
truncated file; a JPEG without its end-of-image marker or a PNG without its IEND chunk counts as
truncated even when a decoder would return a partly grey image, and a JPEG whose compressed data is
damaged (libjpeg's "Corrupt JPEG data" warnings, :func:`check_jpeg_data`) counts as corrupt.

Datasets catch :class:`CorruptImageError` in ``__getitem__``, hand it to a
:class:`BadSampleCounter` (which logs the path with ``logging.warning`` and counts it) and
return another sample instead; once more than ``max_bad_fraction`` of the dataset's files have
been found bad, the counter raises a ``RuntimeError`` naming the count and the last bad files.
Nothing is skipped silently. Counting is per process: each DataLoader worker keeps its own
counter, so with W workers up to W times the allowance can pass before one of them stops.

Also here, shared by :mod:`handrecon.data.freihand` and :mod:`handrecon.data.ho3d`:
:class:`DatasetFormatError`, :func:`load_split_detections` (required / optional offline 2D
detections with a clear message on how to make them) and :class:`RobustDataset` (the
substitute-on-bad-file ``__getitem__``, per-worker random generator, id subsets).
"""

from __future__ import annotations

import copy
import logging
import math
import os
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np
import torch

from handrecon.data.detections import Detections

log = logging.getLogger(__name__)

_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"IEND\xaeB`\x82"


class CorruptImageError(OSError):
    """An image file that is missing, empty, undecodable or truncated."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path}: {reason}")

    def __reduce__(self):  # keep (path, reason) through pickling (DataLoader workers)
        return (type(self), (self.path, self.reason))


def _read_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CorruptImageError(path, "file not found") from None
    except OSError as e:
        raise CorruptImageError(path, f"unreadable ({e.strerror or e})") from None
    if not data:
        raise CorruptImageError(path, "file is empty (0 bytes)")
    return data


def check_complete(data: bytes) -> str | None:
    """Reason why encoded image bytes look truncated, or None. Knows JPEG and PNG; other
    formats are left to the decoder."""
    if data.startswith(_JPEG_SOI):
        # trailing padding after the end-of-image marker is tolerated
        if not data.rstrip(b"\x00\r\n \t").endswith(_JPEG_EOI):
            return f"truncated JPEG (no end-of-image marker FFD9 at the end of {len(data)} bytes)"
    elif data.startswith(_PNG_SIGNATURE):
        if _PNG_IEND not in data[-64:]:
            return f"truncated PNG (no IEND chunk at the end of {len(data)} bytes)"
    return None


def check_jpeg_data(data: bytes) -> str | None:
    """Reason why a complete-looking JPEG's compressed data is damaged, or None.

    A JPEG with valid markers but damaged entropy-coded data decodes without an error in OpenCV
    or Pillow (libjpeg only warns, "Corrupt JPEG data: ...", and fills in grey); libjpeg-turbo
    through simplejpeg with ``strict=True`` turns those warnings into errors. Decoded at 1/8 scale
    (every coefficient is still entropy-decoded), about 0.4x the time of a full decode.
    """
    if not data.startswith(_JPEG_SOI):
        return None
    import simplejpeg

    try:
        simplejpeg.decode_jpeg(data, colorspace="GRAY", fastdct=True, min_height=1, min_width=1, min_factor=8,
                               strict=True)
        return None
    except ValueError as strict_error:
        try:  # an error even without strict: a JPEG flavour simplejpeg cannot read; OpenCV decides
            simplejpeg.decode_jpeg(data, colorspace="GRAY", fastdct=True, min_height=1, min_width=1, min_factor=8,
                                   strict=False)
        except ValueError:
            return None
        return f"corrupt JPEG data ({str(strict_error).strip()})"


def _decode(path: Path, flags: int) -> np.ndarray:
    data = _read_bytes(path)
    reason = check_complete(data) or check_jpeg_data(data)
    if reason is not None:
        raise CorruptImageError(path, reason)
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error as e:
        raise CorruptImageError(path, f"OpenCV could not decode it ({str(e).strip()})") from None
    if img is None or img.size == 0:
        raise CorruptImageError(path, "OpenCV could not decode it (not an image, or a damaged one)")
    return img


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Image file -> (H, W, 3) uint8 RGB. Grey images are expanded to 3 channels, 16-bit ones
    reduced to 8 bits, alpha dropped. Raises :class:`CorruptImageError`."""
    path = Path(path)
    bgr = _decode(path, cv2.IMREAD_COLOR)
    if bgr.ndim != 3 or bgr.shape[2] != 3:
        raise CorruptImageError(path, f"decoded to shape {bgr.shape}; expected (H, W, 3)")
    if bgr.dtype != np.uint8:
        raise CorruptImageError(path, f"decoded to dtype {bgr.dtype}; expected uint8")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_mask(path: str | os.PathLike, threshold: float = 0.5) -> np.ndarray:
    """Mask image -> (H, W) float32 in {0, 1} (pixels above ``threshold`` x 255 are 1; JPEG
    masks carry compression noise). Raises :class:`CorruptImageError`."""
    path = Path(path)
    m = _decode(path, cv2.IMREAD_GRAYSCALE)
    if m.ndim == 3:
        m = m[..., 0]
    scale = 65535.0 if m.dtype == np.uint16 else 255.0
    return (m.astype(np.float32) > threshold * scale).astype(np.float32)


class BadSampleCounter:
    """Counts distinct bad files of one dataset; fails loudly when there are too many.

    ``total`` is the number of image files the dataset reads; at most
    ``floor(max_bad_fraction * total)`` distinct bad files are tolerated.
    """

    def __init__(self, total: int, max_bad_fraction: float = 0.01, what: str = "dataset", keep_last: int = 5) -> None:
        if not 0.0 <= float(max_bad_fraction) <= 1.0:
            raise ValueError(f"max_bad_fraction must be in [0, 1], got {max_bad_fraction}")
        self.total = int(total)
        self.max_bad_fraction = float(max_bad_fraction)
        self.what = what
        self.keep_last = keep_last
        self.bad: OrderedDict[str, str] = OrderedDict()  # path -> reason, in order found

    @property
    def allowed(self) -> int:
        return int(math.floor(self.max_bad_fraction * self.total + 1e-9))

    @property
    def count(self) -> int:
        return len(self.bad)

    def is_bad(self, path: str | os.PathLike) -> bool:
        return str(path) in self.bad

    def record(self, path: str | os.PathLike, reason: str) -> None:
        """Log and count one bad file; raise RuntimeError once the allowance is exceeded."""
        path = str(path)
        if path not in self.bad:
            self.bad[path] = reason
            log.warning(
                "%s: bad image %s (%s); another sample is used instead [%d bad of %d files so far, %d allowed]",
                self.what, path, reason, self.count, self.total, self.allowed,
            )
        if self.count > self.allowed:
            last = list(self.bad.items())[-self.keep_last:]
            lines = "; ".join(f"{p} ({r})" for p, r in last)
            raise RuntimeError(
                f"{self.what}: {self.count} bad image files out of {self.total} exceed max_bad_fraction="
                f"{self.max_bad_fraction} ({self.allowed} allowed). Last bad files: {lines}. "
                "Re-download or re-extract them, or raise max_bad_fraction."
            )


# ---------------------------------------------------------------- shared by the dataset readers


#: how handrecon's data configs choose the detection files (appended to the "no detections" message)
DETECTIONS_KEYS_HINT = (
    " In handrecon's data configs, data.detections_dir (now {folder}) is the folder of every split's file "
    "(<split>.json); data.train_dataset.detections, data.val_dataset.detections and "
    "data.test_dataset.detections set single files (validation reads the training split's file)."
)


class DatasetFormatError(ValueError):
    """A dataset folder that does not have the published layout (names the file and what was expected)."""


def load_split_detections(path: str | os.PathLike, split: str, *, required: bool, what: str,
                          how_to_make: str) -> Detections | None:
    """Offline 2D detections of one split, or None when optional and absent.

    A required file that is missing raises :class:`DatasetFormatError` saying how to make it; a
    file for another split, malformed or with keypoints of the wrong shape raises
    ``handrecon.data.detections.DetectionsError`` (a ValueError naming the file).
    """
    path = Path(path)
    if not path.is_file():
        if required:
            raise DatasetFormatError(
                f"{what}: the 2D detections file {path} does not exist. Training uses offline 2D "
                f"detections (21 keypoints + confidences per image). {how_to_make}"
            )
        log.warning("%s: no 2D detections at %s; kp2d and kp2d_conf are zeros for every sample", what, path)
        return None
    return Detections.load(path, split=split)


def check_detection_coverage(det: Detections, names: list[str], path: str | os.PathLike, what: str) -> None:
    """Every image name must have a detection; one error lists how many and which are missing."""
    missing = [n for n in names if n not in det]
    if missing:
        raise DatasetFormatError(
            f"{what}: {len(missing)} of {len(names)} images have no detection in {path} "
            f"(first missing: {missing[:5]}); the file holds {len(det)} images of split {det.split!r}. "
            "Were the detections made for this dataset and split?"
        )


class RobustDataset(torch.utils.data.Dataset):
    """Base of the dataset readers: ``__getitem__`` calls ``load_sample(i)`` and, on a bad image
    file, records it with a :class:`BadSampleCounter` and returns the next readable sample.

    Subclasses set ``self.bad_files = BadSampleCounter(...)`` and implement ``load_sample`` and
    ``__len__``. ``self.rng()`` is a numpy Generator seeded from ``torch.initial_seed()`` (distinct
    per DataLoader worker and epoch, reproducible under ``seed_everything``).
    """

    bad_files: BadSampleCounter
    max_substitutes: int = 10
    _rng: np.random.Generator | None = None
    _rng_seed: int | None = None

    def _load_detections(self, detections, split: str, required: bool | None, training_split: str,
                         how_to_make: str) -> None:
        """Set ``detections_path`` (default ``<root>/detections/<split>.json``) and ``detections``;
        the file is required on the training split unless ``required`` says otherwise."""
        self.detections_path = Path(detections) if detections else self.root / "detections" / f"{split}.json"
        required = (split == training_split) if required is None else bool(required)
        how = how_to_make.format(root=self.root, split=split, version=getattr(self, "version", None),
                                 out=self.detections_path)
        how += DETECTIONS_KEYS_HINT.format(folder=self.detections_path.parent)
        self.detections = load_split_detections(self.detections_path, split, required=required, what=self.what,
                                                how_to_make=how)

    def _validated_ids(self, ids, n: int) -> np.ndarray:
        """ids (None: all n) as an int64 array, each in 0..n-1 (error names the dataset)."""
        ids = np.arange(n) if ids is None else np.asarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) and (ids.min() < 0 or ids.max() >= n):
            raise ValueError(f"{self.what}: ids must be in 0..{n - 1}, got min {ids.min()} max {ids.max()}")
        return ids

    def with_ids(self, ids):
        """A copy restricted to sample ids ``ids`` (annotations and detections are shared)."""
        new = copy.copy(self)
        new._set_ids(ids)
        return new

    @property
    def all_ids(self) -> np.ndarray:
        """The sample ids this dataset draws from (for train/val splits)."""
        return self.ids

    def raw_sample(self, i: int) -> tuple[dict, dict]:  # pragma: no cover - abstract
        """-> (raw sample for :func:`handrecon.data.transforms.apply`, meta for ``to_model_sample``)."""
        raise NotImplementedError

    def load_sample(self, i: int) -> dict:
        """The model's sample: the raw sample cropped, augmented and converted (shared by the readers)."""
        from handrecon.data import transforms as T

        raw, meta = self.raw_sample(i)
        out = T.apply(raw, self.rng(), self.augment, self.image_size)
        return T.to_model_sample(out, **meta)

    #: the training sampler may pass ``(index, draw_seed)``: the sample's augmentation then draws from
    #: ``default_rng(draw_seed)`` (:class:`handrecon.data.datamodule.ResumableRandomSampler`)
    accepts_keyed_index = True

    def __getitem__(self, i) -> dict:
        draw_seed = None
        if isinstance(i, tuple | list):
            i, draw_seed = int(i[0]), i[1]
        self._draw = None if draw_seed is None else np.random.default_rng(draw_seed)
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for a dataset of {n} samples")
        i %= n
        tries = min(n, self.max_substitutes)
        for k in range(tries):
            j = (i + k) % n
            try:
                sample = self.load_sample(j)
            except CorruptImageError as e:
                self.bad_files.record(e.path, e.reason)
                continue
            sample["bad_skipped"] = k  # bad files passed over for this sample: counted in the run's summary
            return sample
        raise RuntimeError(
            f"{self.bad_files.what}: {tries} consecutive samples from index {i} have unreadable images "
            f"(last bad files: {list(self.bad_files.bad)[-3:]})"
        )

    def rng(self) -> np.random.Generator:
        if getattr(self, "_draw", None) is not None:  # this sample's own generator (keyed index)
            return self._draw
        seed = torch.initial_seed()
        if self._rng is None or self._rng_seed != seed:
            self._rng = np.random.default_rng(seed % (2**63))
            self._rng_seed = seed
        return self._rng
