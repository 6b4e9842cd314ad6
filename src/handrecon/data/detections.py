"""Offline 2D detections: the one schema every loader and detector uses.

File layout (JSON, one file per split)::

    {
      "format": "handrecon.detections", "version": 1,
      "dataset": "freihand",            # free text: synthetic | freihand | ho3d | user
      "split": "training",              # the split the image names belong to
      "detector": "openpose",           # what made it: openpose | mediapipe | handrecon | synthetic | s2hand-import
      "joint_order": "freihand21",      # always FreiHAND/OpenPose order (handrecon.joints)
      "items": {"<image name>": {"xy": [[u, v] x 21], "conf": [c x 21], "side": "left"}, ...}
    }

``xy`` are pixels of the image named (the full image as stored in the dataset), ``conf`` in
[0, 1]; a keypoint the detector did not find has conf 0 (its xy is then meaningless, 0 by
convention). ``side`` is optional: ``"left"`` or ``"right"`` where the detector told which hand it
is (readers of user folders flip left hands into right ones); absent means unknown. Image names are dataset ids: FreiHAND's 8-digit index (``"00000123"``), HO3D's
``"<seq>/<frame>"``, a file stem for user folders.

Also imported: the S2HAND list layout ``[xy (N x 21 x 2), conf (N x 21 x 1), names (N)]`` (each name a
one-element list ``["00000000.jpg"]``, as S2HAND's detector script writes it) and
OpenPose's per-image JSON (``people[k]["hand_right_keypoints_2d"]``: 63 numbers x, y, c).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from handrecon.joints import NUM_JOINTS

FORMAT = "handrecon.detections"
VERSION = 1
#: the values of an item's optional ``side``
SIDES: tuple[str, ...] = ("left", "right")


class DetectionsError(ValueError):
    """A detections file that is missing, malformed or for another split."""


class Detections:
    """2D detections of one split: names (N), xy (N, 21, 2) pixels, conf (N, 21) in [0, 1], and
    ``sides`` {name: "left" | "right"} for the images whose hand side is known."""

    def __init__(self, names: list[str], xy, conf, dataset: str = "unknown", split: str = "unknown",
                 detector: str = "unknown", sides: dict[str, str] | None = None):
        self.names = list(names)
        self.dataset, self.split, self.detector = dataset, split, detector
        n = len(self.names)
        self._xy_buf = np.asarray(xy, dtype=np.float32).reshape(-1, NUM_JOINTS, 2) if n else np.zeros((0, NUM_JOINTS, 2), np.float32)
        self._conf_buf = np.asarray(conf, dtype=np.float32).reshape(-1, NUM_JOINTS) if n else np.zeros((0, NUM_JOINTS), np.float32)
        if not (n == len(self._xy_buf) == len(self._conf_buf)):
            raise DetectionsError(
                f"detections: {n} names but xy {self._xy_buf.shape} and conf {self._conf_buf.shape}; expected (N, 21, 2) and (N, 21)"
            )
        self._index = {name: i for i, name in enumerate(self.names)}
        if len(self._index) != n:
            raise DetectionsError("detections: duplicate image names")
        self.sides: dict[str, str] = {}
        for name, side in (sides or {}).items():
            self.set_side(name, side)
        self.check_content()

    def set_side(self, name: str, side: str | None) -> None:
        """Record (or with None forget) which hand image ``name`` shows."""
        if side is None:
            self.sides.pop(name, None)
            return
        if side not in SIDES:
            raise DetectionsError(f"detection for {name!r}: side must be one of {SIDES}, got {side!r}")
        if name not in self._index:
            raise DetectionsError(f"side given for {name!r}, which has no detection")
        self.sides[name] = side

    def side(self, name: str) -> str | None:
        """'left' / 'right' where the detections say which hand image ``name`` shows, else None."""
        return self.sides.get(name)

    def check_content(self, where: str = "detections") -> None:
        """Confidences finite and in [0, 1], keypoints with confidence > 0 finite: else one
        :class:`DetectionsError` naming the image and joint."""
        xy, conf = self.xy, self.conf
        bad = ~np.isfinite(conf) | (conf < 0) | (conf > 1)
        if bad.any():
            i, j = map(int, np.argwhere(bad)[0])
            raise DetectionsError(f"{where}: image {self.names[i]!r} joint {j}: confidence {conf[i, j]!r} is not in [0, 1] "
                                  f"({int(bad.sum())} such values)")
        bad = (conf > 0) & ~np.isfinite(xy).all(-1)
        if bad.any():
            i, j = map(int, np.argwhere(bad)[0])
            raise DetectionsError(f"{where}: image {self.names[i]!r} joint {j}: keypoint {xy[i, j].tolist()} is not finite "
                                  f"with confidence {conf[i, j]:.3g} ({int(bad.sum())} such keypoints)")

    def check_inside(self, width: int, height: int, where: str = "detections", margin: float = 1.0,
                     names=None) -> None:
        """Confident keypoints must lie within ``margin`` image sizes of a ``width`` x ``height`` image
        (farther: pixels of another image size, or normalised coordinates): one error naming the image."""
        idx = np.arange(len(self)) if names is None else np.array([self._index[n] for n in names if n in self._index], np.int64)
        if not len(idx):
            return
        xy, conf = self.xy[idx], self.conf[idx]
        lo, hi = np.array([-margin * width, -margin * height]), np.array([(1 + margin) * width, (1 + margin) * height])
        bad = (conf > 0) & ((xy < lo) | (xy > hi)).any(-1)
        if bad.any():
            i, j = map(int, np.argwhere(bad)[0])
            raise DetectionsError(f"{where}: image {self.names[int(idx[i])]!r} joint {j}: keypoint {xy[i, j].tolist()} px lies "
                                  f"far outside its {width}x{height} image ({int(bad.any(-1).sum())} images so); "
                                  "detections must be pixels of the full image")

    def __repr__(self) -> str:
        return f"Detections({self.dataset}/{self.split}, detector={self.detector}, n={len(self)})"

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: str) -> bool:
        return name in self._index

    def get(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(xy (21, 2), conf (21,)) of one image; KeyError names the missing image."""
        try:
            i = self._index[name]
        except KeyError:
            raise KeyError(f"no detection for image {name!r} ({self.dataset}/{self.split}, {len(self)} images)") from None
        return self.xy[i], self.conf[i]

    def take(self, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(xy (N, 21, 2), conf (N, 21)) of these images, in this order (KeyError names a missing one)."""
        try:
            idx = np.array([self._index[n] for n in names], dtype=np.int64)
        except KeyError as e:
            raise KeyError(f"no detection for image {e.args[0]!r} ({self.dataset}/{self.split}, {len(self)} images)") from None
        return self.xy[idx], self.conf[idx]

    def add(self, name: str, xy: np.ndarray, conf: np.ndarray, side: str | None = None) -> None:
        """Add or replace one image's detection (amortised O(1): arrays grow geometrically)."""
        xy = np.asarray(xy, np.float32)
        conf = np.asarray(conf, np.float32).reshape(-1)
        if xy.shape != (NUM_JOINTS, 2) or conf.shape != (NUM_JOINTS,):
            raise DetectionsError(f"detection for {name!r}: expected xy (21, 2) and conf (21,), got {xy.shape} and {conf.shape}")
        if name in self._index:
            i = self._index[name]
            self.xy[i], self.conf[i] = xy, conf
            self.set_side(name, side)
            return
        n = len(self.names)
        if n >= len(self._xy_buf):
            cap = max(16, 2 * len(self._xy_buf))
            self._xy_buf = np.concatenate([self._xy_buf, np.zeros((cap - len(self._xy_buf), NUM_JOINTS, 2), np.float32)])
            self._conf_buf = np.concatenate([self._conf_buf, np.zeros((cap - len(self._conf_buf), NUM_JOINTS), np.float32)])
        self._xy_buf[n], self._conf_buf[n] = xy, conf
        self._index[name] = n
        self.names.append(name)
        self.set_side(name, side)

    @property
    def xy(self) -> np.ndarray:
        """(N, 21, 2) pixels (a view)."""
        return self._xy_buf[: len(self.names)]

    @property
    def conf(self) -> np.ndarray:
        """(N, 21) in [0, 1] (a view)."""
        return self._conf_buf[: len(self.names)]

    @classmethod
    def empty(cls, dataset: str = "unknown", split: str = "unknown", detector: str = "unknown") -> Detections:
        return cls([], np.zeros((0, NUM_JOINTS, 2)), np.zeros((0, NUM_JOINTS)), dataset, split, detector)

    # ------------------------------------------------------------------ I/O
    def save(self, path: str | os.PathLike) -> None:
        """Write atomically (a killed detection run never leaves a half-written file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "format": FORMAT,
            "version": VERSION,
            "dataset": self.dataset,
            "split": self.split,
            "detector": self.detector,
            "joint_order": "freihand21",
            "items": {
                n: {"xy": np.round(self.xy[i], 2).tolist(), "conf": np.round(self.conf[i], 4).tolist(),
                    **({"side": self.sides[n]} if n in self.sides else {})}
                for i, n in enumerate(self.names)
            },
        }
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike, split: str | None = None, dataset: str | None = None) -> Detections:
        """Read any supported layout. ``split``/``dataset``, when given, must match the file's."""
        path = Path(path)
        if not path.is_file():
            raise DetectionsError(f"detections file not found: {path} (make one with `python -m handrecon.detect`)")
        try:
            doc = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DetectionsError(f"detections file {path} is not valid JSON: {e}") from e
        if isinstance(doc, dict) and doc.get("format") == FORMAT:
            det = cls._from_doc(doc, path)
        elif isinstance(doc, list) and len(doc) == 3:
            det = cls.from_s2hand_list(doc, path, split=split or "unknown", dataset=dataset or "unknown")
        else:
            raise DetectionsError(
                f"{path}: unknown detections layout; expected a handrecon detections JSON "
                f"(format={FORMAT!r}) or the S2HAND list [xy, conf, names]"
            )
        if split is not None and det.split not in ("unknown", split):
            raise DetectionsError(f"{path} holds detections for split {det.split!r}, but split {split!r} was expected")
        if dataset is not None and det.dataset not in ("unknown", dataset):
            raise DetectionsError(f"{path} holds detections for dataset {det.dataset!r}, but {dataset!r} was expected")
        return det

    @classmethod
    def _from_doc(cls, doc: dict, path: Path) -> Detections:
        items = doc.get("items")
        if not isinstance(items, dict):
            raise DetectionsError(f"{path}: 'items' must be an object mapping image names to {{xy, conf}}")
        names = list(items)
        xy = np.zeros((len(names), NUM_JOINTS, 2), np.float32)
        conf = np.zeros((len(names), NUM_JOINTS), np.float32)
        sides: dict[str, str] = {}
        for i, n in enumerate(names):
            it = items[n]
            a, c = np.asarray(it.get("xy"), np.float32), np.asarray(it.get("conf"), np.float32)
            if a.shape != (NUM_JOINTS, 2) or c.shape != (NUM_JOINTS,):
                raise DetectionsError(f"{path}: item {n!r} has xy {a.shape} and conf {c.shape}; expected (21, 2) and (21,)")
            xy[i], conf[i] = a, c
            side = it.get("side")
            if side is not None:
                if side not in SIDES:
                    raise DetectionsError(f"{path}: item {n!r} has side {side!r}; expected one of {SIDES} (or no 'side')")
                sides[n] = side
        try:
            return cls(names, xy, conf, doc.get("dataset", "unknown"), doc.get("split", "unknown"),
                       doc.get("detector", "unknown"), sides=sides)
        except DetectionsError as e:
            raise DetectionsError(str(e).replace("detections:", f"{path}:", 1)) from None

    @classmethod
    def from_s2hand_list(cls, doc: list, path: Path | str = "<list>", split: str = "unknown", dataset: str = "unknown") -> Detections:
        """S2HAND's published layout: [xy (N, 21, 2), conf (N, 21, 1), names (N)]. Its detector script
        writes each name as a one-element list (``np.array([file]).tolist()``: ``["00000000.jpg"]``);
        plain strings are read too."""
        xy, conf, names = doc
        xy, conf = np.asarray(xy, np.float32), np.asarray(conf, np.float32)
        if xy.ndim != 3 or xy.shape[1:] != (NUM_JOINTS, 2):
            raise DetectionsError(f"{path}: S2HAND list xy has shape {xy.shape}; expected (N, 21, 2)")
        conf = conf.reshape(len(conf), -1)
        if conf.shape != (len(xy), NUM_JOINTS) or len(names) != len(xy):
            raise DetectionsError(f"{path}: S2HAND list has {len(xy)} xy, conf {conf.shape}, {len(names)} names; expected N each")
        names = [_image_id(_s2hand_name(n, i, path)) for i, n in enumerate(names)]
        return cls(names, xy, conf, dataset, split, "s2hand-import")

    @classmethod
    def from_openpose_dir(cls, folder: str | os.PathLike, hand: str = "right", split: str = "unknown",
                          dataset: str = "unknown") -> Detections:
        """OpenPose's ``--write_json`` output: one ``<stem>_keypoints.json`` per image; the most
        confident person's ``hand_<hand>_keypoints_2d`` (63 numbers) is taken and ``hand`` recorded as its side."""
        if hand not in SIDES:
            raise DetectionsError(f"hand must be one of {SIDES}, got {hand!r}")
        folder = Path(folder)
        files = sorted(folder.glob("*_keypoints.json"))
        if not files:
            raise DetectionsError(f"{folder}: no OpenPose '*_keypoints.json' files found")
        det = cls.empty(dataset, split, "openpose-import")
        key = f"hand_{hand}_keypoints_2d"
        for f in files:
            people = json.loads(f.read_text()).get("people", [])
            best = None
            for p in people:
                k = np.asarray(p.get(key, []), np.float32)
                if k.size != NUM_JOINTS * 3:
                    continue
                k = k.reshape(NUM_JOINTS, 3)
                if best is None or k[:, 2].sum() > best[:, 2].sum():
                    best = k
            if best is None:
                best = np.zeros((NUM_JOINTS, 3), np.float32)
            det.add(f.name[: -len("_keypoints.json")], best[:, :2], best[:, 2], side=hand)
        return det


def _s2hand_name(name, index: int, path) -> str:
    """One entry of an S2HAND list's names: a file name, or a one-element list holding it (as S2HAND's
    detector script writes them)."""
    if isinstance(name, list) and len(name) == 1:
        name = name[0]
    if not isinstance(name, str):
        raise DetectionsError(f"{path}: S2HAND list name {index} is {name!r}; expected an image file name "
                              "(or a one-element list holding one, e.g. [\"00000000.jpg\"])")
    return name


def _image_id(name: str) -> str:
    """Image path as stored by other tools -> handrecon's image id.

    'training/rgb/00000123.jpg' -> '00000123' (FreiHAND); 'train/ABF10/rgb/0000.png' ->
    'ABF10/0000' (HO3D: the sequence is kept, frame numbers repeat across sequences);
    'ABF10/0000' stays as it is.
    """
    p = Path(name)
    parts = p.parts
    if "rgb" in parts:
        i = parts.index("rgb")
        seq = parts[i - 1] if i > 0 and parts[i - 1] not in ("training", "evaluation", "train", "test") else None
        return f"{seq}/{p.stem}" if seq else p.stem
    return str(p.with_suffix("")) if p.suffix else name
