"""MediaPipe Hand Landmarker as an offline 2D hand detector.

Uses MediaPipe's Tasks API (``mediapipe.tasks.python.vision.HandLandmarker``, image mode) with
the user's ``hand_landmarker.task`` model file. ``mediapipe`` is an optional dependency, imported
only when a :class:`MediaPipeHand` is made (``pip install mediapipe``).

Keypoint order: MediaPipe's 21 hand landmarks are WRIST, THUMB_CMC, THUMB_MCP, THUMB_IP,
THUMB_TIP, INDEX_FINGER_MCP .. _TIP, MIDDLE_FINGER_*, RING_FINGER_*, PINKY_* (each finger from
base to tip): the same positional order as OpenPose and FreiHAND, handrecon's canonical order
(:mod:`handrecon.joints`), so no reordering is done. (MediaPipe names the thumb joints
anatomically CMC/MCP/IP/TIP; they are FreiHAND's thumb joints 1-4.)

Coordinates: MediaPipe returns x, y normalised by the image width and height with 0 and 1 at
the image edges; handrecon's pixels have pixel centres at integers (an image spans
[-0.5, W - 0.5]), so u = x * W - 0.5, v = y * H - 0.5 (:func:`landmarks_to_pixels`).

Confidence: the Hand Landmarker gives no per-landmark confidence, only a per-hand handedness
score (the probability of its Left/Right label, in [0, 1]; MediaPipe only reports a hand whose
presence passed its thresholds). Every keypoint of the reported hand gets that score; no hand
-> conf 0 and xy 0. When several hands are reported (``num_hands`` > 1) the one with the
highest score is kept. The handedness label itself is not used (MediaPipe labels the subject's
hands; a mirrored image flips it).

NOT VERIFIED HERE: mediapipe and the .task file are not available in handrecon's build
environment; only the result conversion (:func:`result_to_detection`) is tested.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from handrecon.joints import NUM_JOINTS

TASK_HELP = (
    "Get hand_landmarker.task from the MediaPipe Hand Landmarker page "
    "(https://ai.google.dev/edge/mediapipe/solutions/vision/hand_landmarker, 'Models') and pass it with --weights."
)


def landmarks_to_pixels(landmarks: np.ndarray, width: int, height: int) -> np.ndarray:
    """Normalised landmarks (21, 2 or 3) (x, y in [0, 1] across the image) -> pixels (21, 2)
    in handrecon's pixel-centre convention (u = x W - 0.5, v = y H - 0.5). Order is kept."""
    lm = np.asarray(landmarks, np.float64)
    if lm.ndim != 2 or lm.shape[0] != NUM_JOINTS or lm.shape[1] < 2:
        raise ValueError(f"expected 21 landmarks with x, y (21, 2 or 3), got shape {lm.shape}")
    return np.stack([lm[:, 0] * width - 0.5, lm[:, 1] * height - 0.5], -1).astype(np.float32)


def result_to_detection(result, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """A ``HandLandmarkerResult`` (``hand_landmarks``: per hand 21 objects with .x/.y;
    ``handedness``: per hand a list of categories with .score) -> (xy (21, 2) px, conf (21,)).
    The hand with the highest handedness score is taken; no hand -> zeros."""
    hands = list(getattr(result, "hand_landmarks", None) or [])
    if not hands:
        return np.zeros((NUM_JOINTS, 2), np.float32), np.zeros(NUM_JOINTS, np.float32)
    handed = list(getattr(result, "handedness", None) or [])
    scores = [max((float(c.score) for c in handed[i]), default=0.0) if i < len(handed) else 0.0 for i in range(len(hands))]
    best = int(np.argmax(scores))
    lms = hands[best]
    if len(lms) != NUM_JOINTS:
        raise ValueError(f"MediaPipe returned {len(lms)} landmarks for a hand; expected 21")
    xy = landmarks_to_pixels(np.array([[p.x, p.y] for p in lms]), width, height)
    conf = np.full(NUM_JOINTS, np.clip(scores[best], 0.0, 1.0), np.float32)
    return xy, conf


def _import_mediapipe():
    try:
        import mediapipe as mp
        from mediapipe.tasks import python as mp_python
        from mediapipe.tasks.python import vision
    except ImportError as e:
        raise ImportError(
            "the MediaPipe backend needs the optional package mediapipe: pip install mediapipe "
            f"(import failed: {e})"
        ) from e
    return mp, mp_python, vision


class MediaPipeHand:
    """MediaPipe Hand Landmarker in image mode. detect(image (H, W, 3) uint8 RGB) -> (xy, conf)."""

    def __init__(self, task_file: str | os.PathLike, num_hands: int = 1, min_detection_confidence: float = 0.5,
                 min_presence_confidence: float = 0.5):
        task_file = Path(task_file)
        if not task_file.is_file():
            raise FileNotFoundError(f"MediaPipe hand landmarker model not found: {task_file}. {TASK_HELP}")
        mp, mp_python, vision = _import_mediapipe()
        self._mp = mp
        options = vision.HandLandmarkerOptions(
            base_options=mp_python.BaseOptions(model_asset_path=str(task_file)),
            running_mode=vision.RunningMode.IMAGE,
            num_hands=int(num_hands),
            min_hand_detection_confidence=float(min_detection_confidence),
            min_hand_presence_confidence=float(min_presence_confidence),
        )
        self._landmarker = vision.HandLandmarker.create_from_options(options)

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"MediaPipe backend expects an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
        mp_image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(image))
        result = self._landmarker.detect(mp_image)
        return result_to_detection(result, image.shape[1], image.shape[0])

    def close(self) -> None:
        if getattr(self, "_landmarker", None) is not None:
            self._landmarker.close()
            self._landmarker = None
