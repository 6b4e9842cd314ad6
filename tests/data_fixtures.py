"""Builders of tiny dataset folders in the published FreiHAND v2 and HO3D v2/v3 layouts.

Importable by any test (``from data_fixtures import make_freihand_tree``). Each image shows a
dark smooth background and one bright disc centred on the projection of the wrist, so tests can
check that image warps follow the keypoints. Detections written with ``Detections.save`` are the
exact projections of the 3D joints (rounded to 0.01 px by the file format).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import cv2
import numpy as np

from handrecon.data.detections import Detections
from handrecon.geometry.camera import project_np
from handrecon.joints import CANONICAL_TO_HO3D, NUM_JOINTS

DISC_RADIUS = 4.0


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W, 3) uint8 dark, smooth (compresses well, decodes fast)."""
    small = rng.integers(0, 70, size=(max(2, height // 16), max(2, width // 16), 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def draw_disc(image_rgb: np.ndarray, uv: np.ndarray, radius: float = DISC_RADIUS, value: int = 255) -> np.ndarray:
    """Anti-aliased filled disc at sub-pixel centre uv (pixel-centre convention), in place."""
    shift = 4
    c = (int(round(uv[0] * (1 << shift))), int(round(uv[1] * (1 << shift))))
    color = (value,) * image_rgb.shape[2] if image_rgb.ndim == 3 else value
    cv2.circle(image_rgb, c, int(round(radius * (1 << shift))), color, thickness=-1, lineType=cv2.LINE_AA, shift=shift)
    return image_rgb


def bright_centroid(image: np.ndarray, threshold: float = 0.6) -> np.ndarray:
    """(2,) intensity-weighted centroid (u, v) of the pixels brighter than ``threshold`` (image in
    [0, 1], (H, W, 3) or (3, H, W) or (H, W))."""
    img = np.asarray(image, np.float64)
    if img.ndim == 3 and img.shape[0] == 3 and img.shape[-1] != 3:
        img = img.transpose(1, 2, 0)
    g = img.mean(-1) if img.ndim == 3 else img
    w = np.where(g > threshold, g, 0.0)
    if w.sum() == 0:
        raise AssertionError("no bright pixel found")
    v, u = np.mgrid[: g.shape[0], : g.shape[1]]
    return np.array([(w * u).sum() / w.sum(), (w * v).sum() / w.sum()])


def random_hand(rng: np.random.Generator, K: np.ndarray, width: int, height: int, z=(0.5, 0.7),
                spread: float = 0.06, margin: float = 0.2) -> np.ndarray:
    """(21, 3) joints in front of the camera (OpenCV frame, metres) whose projections stay in
    the central part of the image."""
    for _ in range(1000):
        zc = rng.uniform(*z)
        u = rng.uniform(width * 0.4, width * 0.6)
        v = rng.uniform(height * 0.4, height * 0.6)
        wrist = np.array([(u - K[0, 2]) * zc / K[0, 0], (v - K[1, 2]) * zc / K[1, 1], zc])
        joints = wrist + rng.uniform(-spread, spread, size=(NUM_JOINTS, 3))
        joints[0] = wrist
        uv = project_np(joints, K)
        if (uv[:, 0] > margin * width).all() and (uv[:, 0] < (1 - margin) * width).all() and \
           (uv[:, 1] > margin * height).all() and (uv[:, 1] < (1 - margin) * height).all():
            return joints
    raise RuntimeError("could not place a hand")


def _write_jpg(path: Path, rgb: np.ndarray, quality: int = 95) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok = cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok, path


def _write_image(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jpg":
        _write_jpg(path, rgb)
    else:
        assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)), path


def _dump(path: Path, arr) -> None:
    path.write_text(json.dumps(np.asarray(arr).tolist()))


# ---------------------------------------------------------------- FreiHAND


def _freihand_split(root: Path, split: str, n: int, versions: int, size: int, rng, with_gt: bool,
                    n_verts: int, with_masks: bool, detections: str | None) -> dict:
    K = np.zeros((n, 3, 3))
    xyz = np.zeros((n, NUM_JOINTS, 3))
    for i in range(n):
        f = rng.uniform(450, 650) * size / 224.0
        K[i] = [[f, 0, size / 2 + rng.uniform(-3, 3)], [0, f, size / 2 + rng.uniform(-3, 3)], [0, 0, 1]]
        xyz[i] = random_hand(rng, K[i], size, size)
    uv = project_np(xyz, K)  # (n, 21, 2)
    verts = xyz[:, :1] + rng.uniform(-0.05, 0.05, size=(n, n_verts, 3))
    for v in range(versions):
        for i in range(n):
            img = _background(rng, size, size)
            if v > 0:  # a "new background": different colours
                img = np.ascontiguousarray(img[..., ::-1])
            draw_disc(img, uv[i, 0])
            _write_jpg(root / split / "rgb" / f"{i + v * n:08d}.jpg", img)
    if with_masks and split == "training":
        for i in range(n):
            m = np.zeros((size, size, 1), np.uint8)
            draw_disc(m, uv[i, 0], radius=10)
            (root / split / "mask").mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(str(root / split / "mask" / f"{i:08d}.jpg"), m[..., 0])
    _dump(root / f"{split}_K.json", K)
    _dump(root / f"{split}_scale.json", rng.uniform(0.025, 0.03, size=n))
    if with_gt:
        _dump(root / f"{split}_xyz.json", xyz)
        _dump(root / f"{split}_verts.json", verts)
        _dump(root / f"{split}_mano.json", rng.normal(size=(n, 1, 61)) * 0.1)
    names, xy = [], []
    if detections is not None:
        per = range(versions) if detections == "all" else range(1)
        for v in per:
            for i in range(n):
                names.append(f"{i + v * n:08d}")
                xy.append(uv[i])
        conf = rng.uniform(0.5, 1.0, size=(len(names), NUM_JOINTS))
        Detections(names, np.array(xy), conf, dataset="freihand", split=split, detector="synthetic").save(
            root / "detections" / f"{split}.json"
        )
    return {"K": K, "xyz": xyz, "verts": verts, "uv": uv, "n": n, "versions": versions}


def make_freihand_tree(root, n: int = 4, versions: int = 4, with_eval_gt: bool = True, n_eval: int = 3,
                       size: int = 224, n_verts: int = 12, with_masks: bool = True,
                       detections: str | None = "all", eval_detections: bool = True, seed: int = 0) -> dict:
    """FreiHAND v2 layout under ``root``: ``versions`` x ``n`` training images, ``n_eval``
    evaluation images (with the released GT files when ``with_eval_gt``), masks for the
    originals, detections for every training image (``detections='all'``), for the originals
    only (``'originals'``) or none (None). Returns the ground truth per split."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    train = _freihand_split(root, "training", n, versions, size, rng, True, n_verts, with_masks, detections)
    ev = _freihand_split(root, "evaluation", n_eval, 1, size, rng, with_eval_gt, n_verts, False,
                         "all" if eval_detections else None)
    return {"root": root, "training": train, "evaluation": ev}


# ---------------------------------------------------------------- HO3D


def make_ho3d_tree(root, version: str = "v2", sequences=("ABF10", "MC1", "SM2"), frames: int = 2,
                   eval_sequences=("SM1",), eval_frames: int = 2, width: int = 640, height: int = 480,
                   detections: bool = True, eval_detections: bool = False, seed: int = 0) -> dict:
    """HO3D layout under ``root``: train.txt / evaluation.txt, rgb (.png for v2, .jpg for v3),
    meta pickles (OpenGL axes, HO3D joint order; the first train frame has None object fields).
    Returns {split: {name: {"joints": canonical OpenCV (21, 3), "K": (3, 3), "uv": (21, 2),
    "bbox": [x0, y0, x1, y1]}}}."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    ext = {"v2": ".png", "v3": ".jpg"}[version]
    truth: dict[str, dict] = {"train": {}, "evaluation": {}}
    for split, seqs, nf in (("train", sequences, frames), ("evaluation", eval_sequences, eval_frames)):
        names = []
        for seq in seqs:
            for k in range(nf):
                frame = f"{k:04d}"
                name = f"{seq}/{frame}"
                names.append(name)
                f = rng.uniform(600, 630)
                K = np.array([[f, 0, width / 2 + rng.uniform(-10, 10)], [0, f, height / 2 + rng.uniform(-10, 10)], [0, 0, 1]])
                joints = random_hand(rng, K, width, height)  # canonical order, OpenCV
                uv = project_np(joints, K)
                bbox = [float(uv[:, 0].min()), float(uv[:, 1].min()), float(uv[:, 0].max()), float(uv[:, 1].max())]
                ho3d_gl = joints[CANONICAL_TO_HO3D] * np.array([1.0, -1.0, -1.0])  # HO3D order, OpenGL
                img = _background(rng, height, width)
                draw_disc(img, uv[0])
                _write_image(root / split / seq / "rgb" / f"{frame}{ext}", img)
                none_obj = split == "train" and len(names) == 1
                meta = {
                    "camMat": K,
                    "objRot": None if none_obj else rng.normal(size=(3, 1)),
                    "objTrans": None if none_obj else np.array([0.0, 0.0, -0.6]),
                    "objName": None if none_obj else "003_cracker_box",
                    "objLabel": None if none_obj else 1,
                    "objCorners3D": None if none_obj else rng.normal(size=(8, 3)),
                    "objCorners3DRest": None if none_obj else rng.normal(size=(8, 3)),
                }
                if split == "train":
                    meta.update(handPose=rng.normal(size=48) * 0.1, handBeta=rng.normal(size=10) * 0.1,
                                handTrans=ho3d_gl[0].copy(), handJoints3D=ho3d_gl)
                else:
                    meta.update(handJoints3D=ho3d_gl[0].copy(), handBoundingBox=np.array(bbox))
                (root / split / seq / "meta").mkdir(parents=True, exist_ok=True)
                with open(root / split / seq / "meta" / f"{frame}.pkl", "wb") as fh:
                    pickle.dump(meta, fh, protocol=2)
                truth[split][name] = {"joints": joints, "K": K, "uv": uv, "bbox": bbox}
        (root / f"{split}.txt").write_text("\n".join(names) + "\n")
        if (split == "train" and detections) or (split == "evaluation" and eval_detections):
            xy = np.array([truth[split][nm]["uv"] for nm in names])
            conf = rng.uniform(0.5, 1.0, size=(len(names), NUM_JOINTS))
            Detections(names, xy, conf, dataset="ho3d", split=split, detector="synthetic").save(
                root / "detections" / f"{split}.json"
            )
    return truth
