"""``python -m handrecon.detect``: run a 2D hand detector over a folder or a dataset split and
write a handrecon detections file; or convert another tool's detections to that file.

Detect (resumable: an existing --out is loaded and its images are skipped)::

    python -m handrecon.detect --images data/FreiHAND --dataset freihand --split training \\
        --backend openpose --weights models/hand_pose_model.pth --out data/det/freihand_training.json \\
        --device cuda --batch-size 16

Import::

    python -m handrecon.detect --import-s2hand s2hand_freihand_train.json --dataset freihand --split training --out OUT.json
    python -m handrecon.detect --import-openpose openpose_json_dir/ --dataset user --out OUT.json

Exit status: 0 done; 1 more than --max-bad-fraction of the images could not be read (the
detections of the readable ones are still written); 2 bad options or input files.
See docs/detections.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from handrecon.data.detections import Detections, DetectionsError
from handrecon.data.folder import IMAGE_SUFFIXES  # the image types data=folder reads
from handrecon.data.images import read_rgb
from handrecon.detect.backends import BOX_MODES, Box, DetectorBackend, build_backend, load_box_file

log = logging.getLogger("handrecon.detect")

DATASETS = ("folder", "freihand", "ho3d")
DEFAULT_SPLIT = {"folder": "all", "freihand": "training", "ho3d": "train"}
#: the ``dataset`` field written for each --dataset choice
DATASET_FIELD = {"folder": "user", "freihand": "freihand", "ho3d": "ho3d"}


class CLIError(Exception):
    """A user error: reported as one line, exit status 2."""


# ---------------------------------------------------------------- image lists and reading


def list_folder(folder: Path) -> list[tuple[str, Path]]:
    """All .jpg/.jpeg/.png files under ``folder`` (nested folders too, sorted), named by their path
    relative to ``folder`` without suffix ("clip1/000123"): the names ``data=folder`` reads
    (:func:`handrecon.data.folder.list_images`)."""
    from handrecon.data.folder import list_images as list_folder_images
    from handrecon.data.images import DatasetFormatError

    try:
        return list_folder_images(folder)
    except DatasetFormatError as e:
        raise CLIError(str(e)) from None


def list_images(root: str | Path, dataset: str, split: str, ho3d_version: str = "v2") -> list[tuple[str, Path]]:
    """(name, path) of every image to detect on."""
    root = Path(root)
    if not root.is_dir():
        raise CLIError(f"--images {root}: not a directory")
    if dataset == "folder":
        return list_folder(root)
    try:
        if dataset == "freihand":
            from handrecon.data import freihand

            return [(str(n), Path(p)) for n, p in freihand.iter_images(root, split)]
        if dataset == "ho3d":
            from handrecon.data import ho3d

            return [(str(n), Path(p)) for n, p in ho3d.iter_images(root, split, ho3d_version)]
    except ImportError as e:
        raise CLIError(f"--dataset {dataset}: the dataset module is not available ({e})") from e
    raise CLIError(f"--dataset must be one of {DATASETS}, got {dataset!r}")


def batches(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# ---------------------------------------------------------------- accumulating results


class Collector:
    """Detections so far (an existing file's plus new ones), without per-image array copies."""

    def __init__(self, base: Detections):
        self.base = base
        self.names: list[str] = []
        self.xy: list[np.ndarray] = []
        self.conf: list[np.ndarray] = []

    def add(self, name: str, xy: np.ndarray, conf: np.ndarray) -> None:
        self.names.append(name)
        self.xy.append(np.asarray(xy, np.float32).reshape(21, 2))
        self.conf.append(np.asarray(conf, np.float32).reshape(21))

    def __len__(self) -> int:
        return len(self.names)

    def detections(self) -> Detections:
        b = self.base
        if not self.names:
            return b
        xy = np.concatenate([b.xy, np.stack(self.xy)], 0)
        conf = np.concatenate([b.conf, np.stack(self.conf)], 0)
        return Detections(list(b.names) + self.names, xy, conf, b.dataset, b.split, b.detector, sides=b.sides)


# ---------------------------------------------------------------- detection run


def load_or_start(out: Path, dataset: str, split: str, detector: str) -> Detections:
    """The existing output (to resume) or an empty one; a file for another split/dataset/detector is an error."""
    if not out.exists():
        return Detections.empty(dataset, split, detector)
    try:
        det = Detections.load(out, split=split, dataset=dataset)
    except DetectionsError as e:
        raise CLIError(f"cannot resume into --out {out}: {e}. Use another --out or remove the file") from e
    if det.detector not in ("unknown", detector):
        raise CLIError(
            f"--out {out} holds detections made by {det.detector!r}; --backend {detector} would mix two detectors. "
            "Use another --out or remove the file"
        )
    det.dataset, det.split, det.detector = dataset, split, detector
    return det


def run_detection(
    backend: DetectorBackend,
    items: list[tuple[str, Path]],
    out: Path,
    dataset: str,
    split: str,
    boxes: dict[str, Box] | None = None,
    batch_size: int = 8,
    save_every: int = 200,
    progress: bool | None = None,
    existing: Detections | None = None,
) -> tuple[Detections, list[tuple[Path, str]], int]:
    """Detect on every image of ``items`` not yet in ``out``; save every ``save_every`` images
    and at the end (also when interrupted). ``existing``: ``out`` as already loaded by
    :func:`load_or_start`. Returns (detections, unreadable (path, reason), skipped)."""
    from tqdm import tqdm

    det = existing if existing is not None else load_or_start(out, dataset, split, backend.name)
    todo = [(n, p) for n, p in items if n not in det]
    skipped = len(items) - len(todo)
    if boxes is not None:
        lacking = [n for n, _ in todo if n not in boxes]
        if lacking:
            raise CLIError(f"--box file has no box for {len(lacking)} images, e.g. {lacking[:5]}")
    col = Collector(det)
    bad: list[tuple[Path, str]] = []
    unsaved = 0
    try:
        with tqdm(total=len(todo), unit="img", disable=None if progress is None else not progress) as bar:
            for chunk in batches(todo, max(1, batch_size)):
                names, images = [], []
                for name, path in chunk:
                    try:
                        images.append(read_rgb(path))
                        names.append(name)
                    except OSError as e:  # CorruptImageError: missing, empty, undecodable, truncated
                        log.warning("unreadable image %s: %s", path, e)
                        bad.append((path, getattr(e, "reason", str(e))))
                if images:
                    results = backend.detect_batch(images, [boxes[n] for n in names] if boxes is not None else None)
                    for name, (xy, conf) in zip(names, results):
                        col.add(name, xy, conf)
                    unsaved += len(images)
                bar.update(len(chunk))
                if unsaved >= save_every:
                    col.detections().save(out)
                    unsaved = 0
    finally:
        if unsaved or not out.exists():
            col.detections().save(out)
    return col.detections(), bad, skipped


# ---------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m handrecon.detect",
        description="Detect 2D hand keypoints offline (or import another tool's detections) into a handrecon detections JSON.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", type=Path, help="image folder (--dataset folder) or dataset root (freihand, ho3d)")
    src.add_argument("--import-s2hand", type=Path, metavar="FILE.json", help="convert S2HAND's [xy, conf, names] JSON")
    src.add_argument("--import-openpose", type=Path, metavar="DIR", help="convert OpenPose --write_json output (*_keypoints.json)")
    p.add_argument("--dataset", choices=DATASETS, default="folder", help="how to list images (default: folder)")
    p.add_argument("--split", default=None, help="split name (default: training for freihand, train for ho3d, all for folder)")
    p.add_argument("--ho3d-version", default="v2", help="HO3D version passed to handrecon.data.ho3d.iter_images (default v2)")
    p.add_argument("--backend", choices=("openpose", "mediapipe", "handrecon"), default="openpose")
    p.add_argument("--weights", type=Path, help="openpose: hand_pose_model.pth; mediapipe: hand_landmarker.task; handrecon: .ckpt")
    p.add_argument("--out", type=Path, required=True, help="output detections JSON (resumed when it exists)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="cpu", help="torch device for openpose/handrecon (cpu, cuda, cuda:1, ...)")
    p.add_argument("--box", default="full",
                   help="hand boxes: 'full' (whole image, padded square), 'center' (centred square) or a JSON file "
                        "{name: [x0, y0, x1, y1]} (default: full)")
    p.add_argument("--box-pad", type=float, default=1.0, help="side of the square made from a file box = pad x its longer side")
    p.add_argument("--save-every", type=int, default=200, help="save after this many new images (default 200)")
    p.add_argument("--max-bad-fraction", type=float, default=0.01,
                   help="exit with status 1 when more than this fraction of the images is unreadable (default 0.01)")
    p.add_argument("--scales", default="0.5,1.0,1.5,2.0", help="openpose: comma-separated crop scales")
    p.add_argument("--boxsize", type=int, default=368, help="openpose: crop side at scale 1 (default 368)")
    p.add_argument("--threshold", type=float, default=0.05, help="openpose: below this heatmap peak a keypoint is not found")
    p.add_argument("--model-class", default=None,
                   help="handrecon: 'package.module:Class' whose load_from_checkpoint loads --weights "
                        "(default: a handrecon training checkpoint)")
    p.add_argument("--image-size", type=int, default=None,
                   help="handrecon: the model's input crop size (default: from the checkpoint's config, else 224)")
    p.add_argument("--hand", choices=("right", "left"), default="right", help="--import-openpose: which hand's keypoints")
    p.add_argument("--overwrite", action="store_true", help="imports: replace an existing --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def _parse_scales(text: str) -> tuple[float, ...]:
    try:
        scales = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        scales = ()
    if not scales or any(s <= 0 for s in scales):
        raise CLIError(f"--scales {text!r}: expected comma-separated positive numbers, e.g. 0.5,1.0,1.5,2.0")
    return scales


def make_backend(args: argparse.Namespace) -> DetectorBackend:
    box_mode = args.box if args.box in BOX_MODES else "full"
    if args.weights is None:
        what = {"openpose": "hand_pose_model.pth", "mediapipe": "hand_landmarker.task", "handrecon": "a trained model .ckpt"}
        raise CLIError(f"--backend {args.backend} needs --weights ({what[args.backend]})")
    if args.backend == "openpose":
        return build_backend("openpose", weights=args.weights, device=args.device, scales=_parse_scales(args.scales),
                             box_mode=box_mode, boxsize=args.boxsize, threshold=args.threshold)
    if args.backend == "mediapipe":
        return build_backend("mediapipe", task_file=args.weights, box_mode=box_mode)
    return build_backend("handrecon", checkpoint=args.weights, model_class=args.model_class, image_size=args.image_size,
                         device=args.device, box_mode=box_mode)


def run_import(args: argparse.Namespace, dataset: str, split: str) -> int:
    if args.out.exists() and not args.overwrite:
        raise CLIError(f"--out {args.out} exists; pass --overwrite to replace it")
    if args.import_s2hand is not None:
        det = Detections.load(args.import_s2hand, split=split, dataset=dataset)
    else:
        if not args.import_openpose.is_dir():
            raise CLIError(f"--import-openpose {args.import_openpose}: not a directory")
        det = Detections.from_openpose_dir(args.import_openpose, hand=args.hand, split=split, dataset=dataset)
    det.dataset, det.split = dataset, split
    det.save(args.out)
    found = float((det.conf > 0).mean()) if len(det) else 0.0
    print(f"imported {len(det)} images ({found:.1%} of keypoints with conf > 0) -> {args.out}")
    return 0


def main(argv: Iterable[str] | None = None) -> int:
    args = build_parser().parse_args(None if argv is None else list(argv))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    split = args.split or DEFAULT_SPLIT[args.dataset]
    dataset = DATASET_FIELD[args.dataset]
    try:
        if args.images is None:
            return run_import(args, dataset, split)
        if args.batch_size < 1 or args.save_every < 1:
            raise CLIError("--batch-size and --save-every must be >= 1")
        items = list_images(args.images, args.dataset, split, args.ho3d_version)
        if not items:
            raise CLIError(f"--images {args.images}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
        boxes = None if args.box in BOX_MODES else load_box_file(args.box, pad=args.box_pad)
        existing = load_or_start(args.out, dataset, split, args.backend)  # before loading any weights
        backend = make_backend(args)
        try:
            det, bad, skipped = run_detection(
                backend, items, args.out, dataset, split, boxes=boxes, batch_size=args.batch_size,
                save_every=args.save_every, progress=False if args.no_progress else None, existing=existing,
            )
        finally:
            backend.close()
    except (CLIError, DetectionsError, FileNotFoundError, ValueError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    new = len(items) - skipped - len(bad)
    print(f"{new} images detected, {skipped} already in {args.out}, {len(bad)} unreadable; {len(det)} images in {args.out}")
    if bad:
        for path, why in bad[:10]:
            print(f"  unreadable: {path} ({why})", file=sys.stderr)
        if len(bad) > 10:
            print(f"  ... and {len(bad) - 10} more", file=sys.stderr)
        attempted = len(items) - skipped
        if len(bad) > args.max_bad_fraction * attempted:
            print(
                f"error: {len(bad)} of {attempted} images were unreadable (more than --max-bad-fraction "
                f"{args.max_bad_fraction}); their names are not in {args.out}",
                file=sys.stderr,
            )
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
