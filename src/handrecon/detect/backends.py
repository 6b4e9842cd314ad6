"""Detector backends: one interface for every offline 2D hand keypoint detector.

A backend takes full images (``uint8`` RGB, ``(H, W, 3)``) and, per image, an optional square
hand box, and returns per image ``xy (21, 2)`` in pixels of that full image and ``conf (21,)``
in [0, 1], in handrecon's canonical joint order (FreiHAND/OpenPose 21, see
:mod:`handrecon.joints`). A keypoint that was not found has conf 0 and xy (0, 0).

Boxes are square and given as ``(cx, cy, side)`` in image pixels, in the same pixel-centre
coordinates as keypoints (:func:`handrecon.geometry.camera.crop_matrix`): the box spans
[cx - side/2, cx + side/2] x [cy - side/2, cy + side/2] and these edges map onto the crop's
edges; a W x W image is the box ((W - 1)/2, (W - 1)/2, W) (it spans [-0.5, W - 0.5]).
``None`` means "no box": the backend then uses the whole image (``box_mode="full"``: the
square of side max(H, W) centred on the image, the short side padded) or its centred square of
side min(H, W) (``box_mode="center"``).

Backends:

- :class:`OpenPoseBackend`: the OpenPose hand network (:mod:`handrecon.detect.openpose_hand`)
  with the user's ``hand_pose_model.pth``.
- :class:`MediaPipeBackend`: MediaPipe's Hand Landmarker with the user's ``hand_landmarker.task``
  (:mod:`handrecon.detect.mediapipe_backend`; needs ``pip install mediapipe``).
- :class:`HandreconBackend`: a trained handrecon model's 2D keypoint branch (any
  ``torch.nn.Module`` with ``predict_keypoints``), e.g. to re-label data with a better detector.

Use :func:`build_backend` to make one by name.
"""

from __future__ import annotations

import importlib
import json
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from handrecon.geometry.camera import apply_homography, crop_matrix, resize_matrix
from handrecon.joints import NUM_JOINTS

#: a square box (cx, cy, side) in image pixels
Box = tuple[float, float, float]
#: one detection: (xy (21, 2) float32 image pixels, conf (21,) float32 in [0, 1])
Detection = tuple[np.ndarray, np.ndarray]

BOX_MODES = ("full", "center")


# ---------------------------------------------------------------- boxes and crops (numpy)


def image_box(height: int, width: int, mode: str = "full") -> Box:
    """The square box used when an image has no hand box.

    ``"full"``: side max(H, W), centred on the image (the whole image is inside, the short
    side is padded). ``"center"``: side min(H, W), centred (the long side is cut)."""
    if mode not in BOX_MODES:
        raise ValueError(f"box_mode must be one of {BOX_MODES}, got {mode!r}")
    side = float(max(height, width) if mode == "full" else min(height, width))
    return ((width - 1) / 2.0, (height - 1) / 2.0, side)


def box_from_xyxy(x0: float, y0: float, x1: float, y1: float, pad: float = 1.0) -> Box:
    """Square box around the rectangle (x0, y0)-(x1, y1) (pixel-centre coordinates, the whole
    image is [-0.5, -0.5, W - 0.5, H - 0.5]): same centre, side = pad * max(w, h)."""
    w, h = float(x1) - float(x0), float(y1) - float(y0)
    if w <= 0 or h <= 0:
        raise ValueError(f"box [x0, y0, x1, y1] = {[x0, y0, x1, y1]} is empty; expected x1 > x0 and y1 > y0")
    return ((float(x0) + float(x1)) / 2.0, (float(y0) + float(y1)) / 2.0, pad * max(w, h))


def resolve_box(box: Box | Sequence[float] | None, image_shape: tuple[int, ...], mode: str = "full") -> Box:
    """``box`` as a validated (cx, cy, side), or the image box of ``mode`` when it is None."""
    if box is None:
        return image_box(int(image_shape[0]), int(image_shape[1]), mode)
    if len(box) != 3:
        raise ValueError(f"a hand box is (cx, cy, side); got {box!r}")
    cx, cy, side = (float(v) for v in box)
    if not (side > 0 and math.isfinite(side) and math.isfinite(cx) and math.isfinite(cy)):
        raise ValueError(f"a hand box needs a finite centre and side > 0; got {box!r}")
    return (cx, cy, side)


def box_matrix(box: Box, out_size: int) -> np.ndarray:
    """(3, 3) affine taking image pixels to the pixels of the ``out_size`` square crop of ``box``."""
    cx, cy, side = box
    return crop_matrix((cx, cy), side, out_size)


def warp_crop(image: np.ndarray, A: np.ndarray, out_size: int, border: int = 0) -> np.ndarray:
    """Warp ``image`` (H, W, C) uint8 by the affine A (3, 3; image px -> crop px) into an
    ``out_size`` x ``out_size`` crop; outside the image is ``border``.

    When A shrinks by more than 2x the image is first reduced with area averaging (so small
    crops of large images are not aliased) and A is adjusted, so the result stays a crop of
    exactly A."""
    if image.ndim != 3:
        raise ValueError(f"expected an (H, W, C) image, got shape {image.shape}")
    A = np.asarray(A, np.float64)
    scale = math.sqrt(abs(np.linalg.det(A[:2, :2])))
    if scale < 0.5:
        h, w = image.shape[:2]
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
        if image.ndim == 2:
            image = image[:, :, None]
        A = A @ np.linalg.inv(resize_matrix((w, h), (nw, nh)))
    out = cv2.warpAffine(
        image, A[:2], (out_size, out_size), flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT, borderValue=(border,) * 4,
    )
    return out.reshape(out_size, out_size, -1)


def crop_to_image(uv: np.ndarray, A: np.ndarray) -> np.ndarray:
    """Crop pixels uv (..., N, 2) back to image pixels under the crop affine A (3, 3)."""
    return apply_homography(np.linalg.inv(A), np.asarray(uv, np.float64)).astype(np.float32)


def load_box_file(path: str | os.PathLike, pad: float = 1.0) -> dict[str, Box]:
    """Read hand boxes: a JSON object ``{"<image name>": [x0, y0, x1, y1], ...}`` in image
    pixels; each is made square (:func:`box_from_xyxy`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"box file not found: {path} (expected a JSON object mapping image names to [x0, y0, x1, y1])")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"box file {path} is not valid JSON: {e}") from e
    if not isinstance(doc, dict):
        raise ValueError(f"box file {path}: expected a JSON object mapping image names to [x0, y0, x1, y1]")
    boxes = {}
    for name, v in doc.items():
        if not (isinstance(v, list) and len(v) == 4 and all(isinstance(t, (int, float)) for t in v)):
            raise ValueError(f"box file {path}: entry {name!r} is {v!r}; expected [x0, y0, x1, y1] (4 numbers)")
        try:
            boxes[str(name)] = box_from_xyxy(*v, pad=pad)
        except ValueError as e:
            raise ValueError(f"box file {path}: entry {name!r}: {e}") from None
    return boxes


def _check_detection(xy: np.ndarray, conf: np.ndarray, who: str) -> Detection:
    xy = np.asarray(xy, np.float32)
    conf = np.asarray(conf, np.float32).reshape(-1)
    if xy.shape != (NUM_JOINTS, 2) or conf.shape != (NUM_JOINTS,):
        raise ValueError(f"{who}: expected xy (21, 2) and conf (21,), got {xy.shape} and {conf.shape}")
    return xy, conf


# ---------------------------------------------------------------- the interface


class DetectorBackend(ABC):
    """Common interface of the offline 2D hand detectors."""

    #: short name written to the detections file's ``detector`` field
    name: str = "unknown"

    @abstractmethod
    def detect_batch(self, images: list[np.ndarray], boxes: Sequence[Box | None] | None = None) -> list[Detection]:
        """images: list of (H_i, W_i, 3) uint8 RGB; boxes: one (cx, cy, side) or None per image.
        Returns per image (xy (21, 2) image pixels, conf (21,) in [0, 1])."""

    def detect(self, image: np.ndarray, box: Box | None = None) -> Detection:
        return self.detect_batch([image], [box])[0]

    def close(self) -> None:
        """Release resources (files, native handles); the default holds none."""
        return None

    def __enter__(self) -> DetectorBackend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _boxes_for(images: list[np.ndarray], boxes: Sequence[Box | None] | None, mode: str) -> list[Box]:
    if boxes is None:
        boxes = [None] * len(images)
    if len(boxes) != len(images):
        raise ValueError(f"detect_batch: {len(images)} images but {len(boxes)} boxes")
    for i, im in enumerate(images):
        if not (isinstance(im, np.ndarray) and im.ndim == 3 and im.shape[2] == 3 and im.dtype == np.uint8):
            raise ValueError(
                f"detect_batch: image {i} must be an (H, W, 3) uint8 RGB array, got "
                f"{getattr(im, 'shape', type(im))} {getattr(im, 'dtype', '')}"
            )
    return [resolve_box(b, im.shape, mode) for im, b in zip(images, boxes)]


class OpenPoseBackend(DetectorBackend):
    """OpenPose hand keypoint network on a square hand crop (multi-scale); see
    :mod:`handrecon.detect.openpose_hand`. ``weights``: the user's ``hand_pose_model.pth``."""

    name = "openpose"

    def __init__(self, weights: str | os.PathLike, device: str = "cpu", scales: Sequence[float] = (0.5, 1.0, 1.5, 2.0),
                 box_mode: str = "full", boxsize: int = 368, sigma: float = 3.0, threshold: float = 0.05):
        from handrecon.detect.openpose_hand import OpenPoseHand

        self.detector = OpenPoseHand.from_checkpoint(
            weights, device=device, scales=scales, boxsize=boxsize, sigma=sigma, threshold=threshold
        )
        self.box_mode = box_mode
        image_box(1, 1, box_mode)  # validates box_mode early

    def detect_batch(self, images, boxes=None):
        return self.detector.detect_batch(images, _boxes_for(images, boxes, self.box_mode))


class MediaPipeBackend(DetectorBackend):
    """MediaPipe Hand Landmarker (``hand_landmarker.task``); see
    :mod:`handrecon.detect.mediapipe_backend`. Images are processed one at a time; with a box
    the landmarker runs on the box crop (resampled to ``crop_size`` px) and results are mapped
    back; without one (and ``box_mode="full"``) it sees the whole image unchanged."""

    name = "mediapipe"

    def __init__(self, task_file: str | os.PathLike, box_mode: str = "full", crop_size: int = 256,
                 num_hands: int = 1, min_detection_confidence: float = 0.5):
        from handrecon.detect.mediapipe_backend import MediaPipeHand

        image_box(1, 1, box_mode)
        self.box_mode = box_mode
        self.crop_size = int(crop_size)
        self.landmarker = MediaPipeHand(task_file, num_hands=num_hands, min_detection_confidence=min_detection_confidence)

    def detect_batch(self, images, boxes=None):
        given = [None] * len(images) if boxes is None else list(boxes)
        sq = _boxes_for(images, given, self.box_mode)
        out = []
        for im, b, box in zip(images, given, sq):
            if b is None and self.box_mode == "full":
                out.append(self.landmarker.detect(im))
                continue
            A = box_matrix(box, self.crop_size)
            xy, conf = self.landmarker.detect(warp_crop(im, A, self.crop_size, border=0))
            xy = np.where(conf[:, None] > 0, crop_to_image(xy, A), 0.0).astype(np.float32)
            out.append((xy, conf))
        return out

    def close(self) -> None:
        self.landmarker.close()


class HandreconBackend(DetectorBackend):
    """A trained handrecon model's 2D keypoint branch used as a detector.

    ``model`` is any ``torch.nn.Module`` with ``predict_keypoints(images (B, 3, S, S) float RGB
    in [0, 1]) -> (uv (B, 21, 2) crop pixels, conf (B, 21))``. Each image is cropped to its box
    (or the image box), resized to ``image_size`` (outside the image: black), and the crop
    keypoints are mapped back to image pixels with the inverse crop affine. conf is clipped to
    [0, 1]."""

    name = "handrecon"

    def __init__(self, model: torch.nn.Module, image_size: int = 224, device: str = "cpu", box_mode: str = "full"):
        if not hasattr(model, "predict_keypoints"):
            raise TypeError(f"HandreconBackend: {type(model).__name__} has no predict_keypoints(images) method")
        image_box(1, 1, box_mode)
        self.model = model.to(device).eval()
        self.image_size = int(image_size)
        self.device = torch.device(device)
        self.box_mode = box_mode

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, model_class: str | None = None, image_size: int | None = None,
                        device: str = "cpu", box_mode: str = "full") -> HandreconBackend:
        """Load a trained model's checkpoint.

        Default (``model_class=None``): a handrecon training checkpoint, loaded with
        :func:`handrecon.cli.checkpoint.load_module`; its ``.net`` is the model and
        ``image_size`` defaults to the training config's ``data.image_size``. With
        ``model_class="package.module:ClassName"``: that class's Lightning-style
        ``load_from_checkpoint(path, map_location=...)`` returns the model (``image_size``
        default 224)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"handrecon checkpoint not found: {path} (pass a trained model's .ckpt with --weights)")
        if model_class is None:
            from handrecon.cli.checkpoint import load_module

            module, cfg = load_module(path, map_location=device)
            model = module.net
            if image_size is None:
                image_size = int(cfg.data.image_size)
        else:
            if ":" not in model_class:
                raise ValueError(f"model class must be written 'package.module:ClassName', got {model_class!r}")
            mod_name, cls_name = model_class.split(":", 1)
            try:
                klass = getattr(importlib.import_module(mod_name), cls_name)
            except (ImportError, AttributeError) as e:
                raise ImportError(f"cannot import model class {model_class!r}: {e}") from e
            model = klass.load_from_checkpoint(str(path), map_location=device)
        return cls(model, image_size=image_size or 224, device=device, box_mode=box_mode)

    def detect_batch(self, images, boxes=None):
        sq = _boxes_for(images, boxes, self.box_mode)
        S = self.image_size
        mats = [box_matrix(b, S) for b in sq]
        crops = np.stack([warp_crop(im, A, S, border=0) for im, A in zip(images, mats)])  # (B, S, S, 3)
        x = torch.from_numpy(crops).to(self.device).permute(0, 3, 1, 2).float() / 255.0  # (B, 3, S, S)
        with torch.no_grad():
            uv, conf = self.model.predict_keypoints(x)
        uv = uv.detach().float().cpu().numpy()  # (B, 21, 2)
        conf = conf.detach().float().cpu().numpy().reshape(len(images), -1)  # (B, 21)
        if uv.shape != (len(images), NUM_JOINTS, 2) or conf.shape != (len(images), NUM_JOINTS):
            raise ValueError(
                f"predict_keypoints returned uv {uv.shape} and conf {conf.shape}; expected ({len(images)}, 21, 2) and ({len(images)}, 21)"
            )
        out = []
        for i, A in enumerate(mats):
            xy = crop_to_image(uv[i], A)
            out.append(_check_detection(xy, np.clip(conf[i], 0.0, 1.0), "handrecon backend"))
        return out


BACKENDS = {"openpose": OpenPoseBackend, "mediapipe": MediaPipeBackend, "handrecon": HandreconBackend}


def build_backend(name: str, **kwargs) -> DetectorBackend:
    """Make a backend by name: ``openpose`` (weights=...), ``mediapipe`` (task_file=...),
    ``handrecon`` (model=..., or checkpoint=... [model_class=...])."""
    if name not in BACKENDS:
        raise ValueError(f"unknown detector backend {name!r}; choose one of {sorted(BACKENDS)}")
    if name == "handrecon" and "model" not in kwargs:
        ckpt = kwargs.pop("checkpoint", None)
        if ckpt is None:
            raise ValueError("handrecon backend needs model=<nn.Module> or checkpoint=<path to a trained .ckpt>")
        return HandreconBackend.from_checkpoint(ckpt, **kwargs)
    return BACKENDS[name](**kwargs)
