"""Offline 2D hand keypoint detection: backends (OpenPose, MediaPipe, a trained handrecon
model) and the ``python -m handrecon.detect`` command that writes a detections file
(:mod:`handrecon.data.detections`). See docs/detections.md."""

from handrecon.detect.backends import (
    BACKENDS,
    Box,
    DetectorBackend,
    HandreconBackend,
    MediaPipeBackend,
    OpenPoseBackend,
    box_from_xyxy,
    build_backend,
    image_box,
    load_box_file,
)

__all__ = [
    "BACKENDS", "Box", "DetectorBackend", "HandreconBackend", "MediaPipeBackend", "OpenPoseBackend", "box_from_xyxy",
    "build_backend", "image_box", "load_box_file",
]
