"""``python -m handrecon task=predict input=IMAGE_OR_FOLDER ckpt=PATH out=DIR [box=full|detector|BOXES.json] [hand=right|left]``.

For each image: a square hand crop (the whole image, the model's own 2D branch as detector, or a
given box), the network, then per image in ``out``:
  <stem>_overlay.png   the textured mesh over the image, with the silhouette outline and 2D joints
  <stem>.obj, <stem>.ply   the mesh with vertex colours (Blender / MeshLab); with hand_model=nimble the
                       778-vertex MANO-topology mesh (only .ply, as points, when no MANO faces are
                       given: hand_model.mano_path), and <stem>_skin.obj/.mtl/_{diffuse,normal,spec}.png
                       NIMBLE's own skin with its texture maps
  <stem>.json          MANO pose/shape, camera (rotation, scale, translation, K), lighting, 2D/3D joints
and ``report.json`` listing what was written and what was skipped (non-images, unreadable files).
``input=synthetic:evaluation:N`` takes the first N evaluation images of the embedded dataset.
Images of unknown intrinsics get fx = fy = focal_ratio x crop side (FreiHAND's average).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from handrecon.geometry import camera
from handrecon.joints import NUM_JOINTS
from handrecon.stages import visualize

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
FOCAL_RATIO = camera.FOCAL_RATIO


@dataclass
class Crop:
    name: str  # the image's stem (detections and boxes are looked up by it)
    path: Path
    image: np.ndarray  # (H, W, 3) uint8 full image
    A: np.ndarray  # (3, 3) full image px -> crop px
    K: np.ndarray  # (3, 3) intrinsics of the crop
    flipped: bool
    out_name: str = ""  # the stem of this image's output files (unique among the inputs)


def output_names(files: list[Path]) -> dict[Path, str]:
    """Output file stem per input: the image's stem, or ``<stem>_<suffix>`` where several inputs
    share a stem (``hand.jpg`` and ``hand.png`` -> ``hand_jpg``, ``hand_png``): no result overwrites another."""
    from collections import Counter

    stems = Counter(p.stem.lower() for p in files)
    names = {p: p.stem if stems[p.stem.lower()] == 1 else f"{p.stem}_{p.suffix.lstrip('.')}" for p in files}
    taken = Counter(n.lower() for n in names.values())
    for p, n in names.items():  # e.g. 'a_jpg.png' beside 'a.jpg' + 'a.png': number what still clashes
        if taken[n.lower()] > 1:
            names[p] = f"{n}_{sorted(files).index(p)}"
    return names


def list_inputs(spec: str) -> list[Path]:
    p = Path(spec)
    if p.is_dir():
        return sorted(q for q in p.iterdir() if q.is_file())
    if p.is_file():
        return [p]
    raise FileNotFoundError(f"input={spec}: no such file or folder")


def resolve_synthetic(spec: str, train_cfg) -> list[Path]:
    """'synthetic:<split>:<N>' -> the first N images of that split of the embedded dataset."""
    from handrecon.data.synth import ensure_synthetic

    _, split, n = (spec.split(":") + ["", "8"])[:3]
    split = split or "evaluation"
    data = train_cfg.data
    if "synthetic" not in data:
        raise ValueError(f"input={spec}: this checkpoint was not trained on data=synthetic; pass an image or a folder")
    opts = {k: v for k, v in OmegaConf.to_container(data.synthetic, resolve=True).items() if k != "workers"}
    root = ensure_synthetic(data.get("root"), cache_dir=data.get("cache_dir"), **opts)
    files = sorted((Path(root) / split / "rgb").glob("*.jpg"))[: int(n)]
    if not files:
        raise FileNotFoundError(f"input={spec}: no images under {Path(root) / split / 'rgb'}")
    return files


def load_boxes(path: str) -> dict[str, list[float]]:
    """box=PATH: a JSON object {image stem: [x0, y0, x1, y1]} (pixels, x0 < x1, y0 < y1). Every
    problem is one error naming the file and, for a bad box, the image."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"box={path}: no such file; expected full, detector, or a JSON file "
                                "{image stem: [x0, y0, x1, y1]}")
    try:
        doc = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"box={path}: not valid JSON ({e}); expected {{image stem: [x0, y0, x1, y1]}}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"box={path}: holds a {type(doc).__name__}; expected an object {{image stem: [x0, y0, x1, y1]}}")
    out = {}
    for name, b in doc.items():
        try:
            x0, y0, x1, y1 = (float(v) for v in b)
        except (TypeError, ValueError):
            raise ValueError(f"box={path}: image {name!r}: box {b!r} is not four numbers [x0, y0, x1, y1]") from None
        if not all(np.isfinite([x0, y0, x1, y1])) or x1 <= x0 or y1 <= y0:
            raise ValueError(f"box={path}: image {name!r}: box {b!r} is empty or inverted; expected [x0, y0, x1, y1] "
                             "with x0 < x1 and y0 < y1 (pixels)")
        out[str(name)] = [x0, y0, x1, y1]
    return out


def make_crop(name: str, path: Path, image: np.ndarray, box, size: int, flip: bool, focal_ratio: float) -> Crop:
    H, W = image.shape[:2]
    if box is None:  # the whole image, centred square
        center, side = ((W - 1) / 2.0, (H - 1) / 2.0), float(max(H, W))
    else:
        x0, y0, x1, y1 = box
        if not (x1 > x0 and y1 > y0):
            raise ValueError(f"image {name!r}: box {list(box)} is empty or inverted; expected [x0, y0, x1, y1], x0 < x1, y0 < y1")
        center, side = ((x0 + x1) / 2.0, (y0 + y1) / 2.0), float(max(x1 - x0, y1 - y0))
    A = camera.crop_matrix(center, side, size)
    if flip:
        A = camera.hflip_matrix(size) @ A
    return Crop(name, path, image, A, camera.crop_intrinsics(size, focal_ratio), flip)


def load_predict_detections(cfg: DictConfig, spec: str, files: list[Path]):
    """The 2D detections a keypoint-reading model gets at inference (model.keypoints_in=detections):
    ``detections=PATH`` (handrecon's detections JSON, image names = file stems, pixels of the full
    image, e.g. from ``python -m handrecon.detect``); for ``input=synthetic:...`` (``files``: its
    images) the embedded dataset's own; else None (the network's own 2D branch finds them)."""
    from handrecon.data.detections import Detections

    if cfg.get("detections"):  # for dataset images, a file of another split is refused
        return Detections.load(cfg.detections, split=files[0].parents[1].name if spec.startswith("synthetic") else None)
    if spec.startswith("synthetic"):
        split, root = files[0].parents[1].name, files[0].parents[2]  # <root>/<split>/rgb/<id>.jpg
        return Detections.load(root / "detections" / f"{split}.json", split=split)
    log.info("predict: no detections given (detections=PATH): the network's own 2D branch provides the keypoints")
    return None


def crop_keypoints(net, images: torch.Tensor, crops: list[Crop], dets) -> tuple[tuple[torch.Tensor, torch.Tensor], list[str]]:
    """Per crop: the detections of its image mapped into the crop (and mirrored with a left hand), or
    the 2D branch's keypoints where the image has none -> ((uv (B, 21, 2) crop px, conf (B, 21)), sources)."""
    have = [dets is not None and c.name in dets for c in crops]
    if all(have):
        uv, conf = torch.zeros(len(crops), NUM_JOINTS, 2), torch.zeros(len(crops), NUM_JOINTS)
    elif net.kp_branch is not None:
        uv, conf = net.predict_keypoints(images)
    else:
        name = crops[have.index(False)].name
        raise ValueError(f"predict: no detections for image {name!r} (detections=...) and this model has no 2D "
                         "branch to find its keypoints")
    for j, c in enumerate(crops):
        if have[j]:
            xy, cf = dets.get(c.name)  # full-image pixels
            uv[j] = torch.from_numpy(camera.apply_homography(c.A, xy)).float()
            conf[j] = torch.from_numpy(cf).float()
    return (uv, conf), ["detections" if h else "2d_branch" for h in have]


def predict(cfg: DictConfig) -> dict:
    from handrecon.cli.checkpoint import command_line_hand_model_path, load_module
    from handrecon.data.images import CorruptImageError, read_rgb
    from handrecon.eval.exporters import (
        save_obj,
        save_params_json,
        save_ply,
        save_points_ply,
        save_textured_obj,
    )

    if not cfg.ckpt:
        raise ValueError("task=predict needs ckpt=<path to a handrecon .ckpt>")
    if not cfg.input:
        raise ValueError("task=predict needs input=<image, folder, or synthetic:evaluation:N>")
    hand = str(cfg.hand)
    if hand not in ("right", "left"):
        raise ValueError(f"hand={hand!r}: expected right or left")
    module, train_cfg = load_module(cfg.ckpt, hand_model_path=command_line_hand_model_path(cfg))
    net = module.net
    size = int(train_cfg.data.image_size)
    out = Path(cfg.out or cfg.paths.output_dir)
    if (out / "report.json").exists() and not cfg.get("overwrite", False):
        raise FileExistsError(f"out={out} already holds the results of an earlier task=predict ({out / 'report.json'}); "
                              "nothing was written: choose another out= folder, or pass overwrite=true to replace "
                              "same-named files")
    out.mkdir(parents=True, exist_ok=True)
    spec = str(cfg.input)
    files = resolve_synthetic(spec, train_cfg) if spec.startswith("synthetic") else list_inputs(spec)
    boxes = None
    box_mode = str(cfg.box)
    if box_mode not in ("full", "detector"):
        boxes = load_boxes(box_mode)
    batch_size = int(cfg.predict_batch_size)
    focal_ratio = float(cfg.focal_ratio)
    report: dict = {"written": [], "skipped": [], "keypoints": {}}
    out_names = output_names(files)
    dets = load_predict_detections(cfg, spec, files) if net.keypoints_in == "detections" else None
    if dets is not None and cfg.get("detections"):
        stems = {p.stem for p in files}
        if not stems & set(dets.names):
            raise ValueError(f"detections={cfg.detections}: names none of the {len(stems)} input images (it holds "
                             f"{len(dets)} images of split {dets.split!r}, e.g. {dets.names[:3]}); is it another "
                             "split's or folder's file? Image names must be the input files' stems")
    hm = net.hand_model
    faces = hm.faces.cpu().numpy()
    # a hand model with a texture space and a MANO-topology output (NIMBLE): <stem>.obj/.ply are the
    # 778-vertex MANO-topology mesh (as evaluated; a point cloud when no MANO faces are at hand), and
    # <stem>_skin.obj/.mtl/_{diffuse,normal,spec}.png the model's own textured skin
    textured = getattr(hm, "tex_dim", 0) > 0
    mano_faces = getattr(hm, "mano_faces", None)
    mano_faces = mano_faces.cpu().numpy() if mano_faces is not None else None
    overlay_renderer = hydra.utils.instantiate(cfg.overlay_renderer)  # pictures only: no gradients needed

    def load_crops(paths: list[Path]) -> list[Crop]:
        crops = []
        for p in paths:
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                report["skipped"].append({"file": str(p), "reason": "not an image (by suffix)"})
                log.warning("skipped %s: not an image", p)
                continue
            try:
                img = read_rgb(p)
            except CorruptImageError as e:
                report["skipped"].append({"file": str(p), "reason": str(e)})
                log.warning("skipped %s: %s", p, e)
                continue
            box = boxes.get(p.stem) if boxes is not None else None
            if dets is not None and p.stem in dets:  # pixels of this image: a far-off keypoint is a wrong file
                dets.check_inside(img.shape[1], img.shape[0], f"detections for {p.name}", names=[p.stem])
            crop = make_crop(p.stem, p, img, box, size, hand == "left", focal_ratio)
            crop.out_name = out_names[p]
            crops.append(crop)
        return crops

    def warp(c: Crop) -> np.ndarray:
        return cv2.warpAffine(c.image, c.A[:2], (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)

    for i in tqdm(range(0, len(files), batch_size), desc="predict", unit="batch"):
        crops = load_crops(files[i : i + batch_size])
        if not crops:
            continue
        if box_mode == "detector":  # the model's own 2D branch on the full image, then re-crop
            imgs = torch.from_numpy(np.stack([warp(c) for c in crops])).permute(0, 3, 1, 2).float() / 255
            uv, conf = net.predict_keypoints(imgs)
            for c, u, cf in zip(crops, uv.numpy(), conf.numpy()):
                full = camera.apply_homography(np.linalg.inv(c.A), u)
                (cx, cy), side = camera.square_box_from_points(full, cf > 0.2 if (cf > 0.2).sum() >= 3 else None, pad=1.4)
                nc = make_crop(c.name, c.path, c.image, (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2),
                               size, c.flipped, focal_ratio)
                c.A, c.K = nc.A, nc.K
        images = torch.from_numpy(np.stack([warp(c) for c in crops])).permute(0, 3, 1, 2).float() / 255
        K = torch.from_numpy(np.stack([c.K for c in crops])).float()
        keypoints = None
        if net.keypoints_in == "detections":  # the detector's keypoints where given, else the 2D branch's
            keypoints, sources = crop_keypoints(net, images, crops, dets)
            for c, src in zip(crops, sources):
                report["keypoints"][c.name] = src
        with torch.inference_mode():  # what make bench times
            o = net(images, K, with_appearance=True, with_kp_branch=False, keypoints=keypoints)
            rend = module.render(o, K, (size, size), renderer=overlay_renderer)
        with torch.inference_mode():
            maps = hm.texture_maps(o.tex_coeffs) if textured and o.tex_coeffs is not None else None
        for j, c in enumerate(crops):
            verts, joints = o.verts[j].numpy(), o.joints[j].numpy()
            skin, f_skin = None, None
            if o.mano_verts is not None:  # the exported mesh is the MANO-topology one
                skin, f_skin, verts = verts, faces, o.mano_verts[j].numpy()
            tex = o.texture[j].numpy() if o.texture is not None and o.texture.dim() == 3 else np.full_like(verts, 0.7)
            uv = o.kp2d_proj[j].numpy()
            f = faces if skin is None else mano_faces
            if c.flipped:  # back to the left hand of the original image: mirror x, flip winding
                verts, joints = verts * [-1, 1, 1], joints * [-1, 1, 1]
                f = None if f is None else f[:, ::-1]
                if skin is not None:
                    skin, f_skin = skin * [-1, 1, 1], f_skin[:, ::-1]
            uv_full = camera.apply_homography(np.linalg.inv(c.A), uv)
            crop_img = visualize.image_to_uint8(images[j])
            ov = visualize.overlay_render(crop_img, rend.rgb[j].numpy(), rend.silhouette[j].numpy())
            ov = visualize.draw_keypoints(ov, uv, radius=2)
            if c.flipped:
                ov = ov[:, ::-1]
            side_by_side = np.concatenate([cv2.resize(c.image, (size * c.image.shape[1] // c.image.shape[0], size)), ov], 1)
            base = out / c.out_name
            cv2.imwrite(str(base) + "_overlay.png", np.ascontiguousarray(side_by_side[..., ::-1]))
            if f is not None:
                save_obj(str(base) + ".obj", verts, f, tex)
                save_ply(str(base) + ".ply", verts, f, tex)
            else:  # MANO's faces are MANO's (licensed): without hand_model.mano_path, the vertices alone
                save_points_ply(str(base) + ".ply", verts)
            if skin is not None:
                fuv = hm.faces_uvs.cpu().numpy()
                save_textured_obj(str(base) + "_skin.obj", skin, f_skin, hm.verts_uvs.cpu().numpy(),
                                  fuv[:, ::-1] if c.flipped else fuv,
                                  {k: v[j].numpy() for k, v in maps.items()} if maps is not None else
                                  {"diffuse": np.full((2, 2, 3), 0.7)})
            K_full = np.linalg.inv(c.A) @ c.K
            save_params_json(str(base) + ".json", {
                "image": str(c.path), "hand": hand, "pose": o.pose[j].numpy(), "betas": o.betas[j].numpy(),
                "local_pose_axis_angle": o.local_pose[j].numpy(), "global_rotation_axis_angle": o.rot_aa[j].numpy(),
                "scale": o.scale[j].numpy(), "translation_m": o.transl[j].numpy(), "K_crop": c.K, "K_image": K_full,
                "crop_affine": c.A, "lighting": o.lighting[j].numpy() if o.lighting is not None else None,
                "keypoints_2d_image_px": uv_full, "keypoints_3d_m": joints,
                **({"texture_coefficients": o.tex_coeffs[j].numpy()} if o.tex_coeffs is not None else {}),
                **({"mano_topology_verts_m": verts} if skin is not None else {}),
            })  # fmt: skip
            report["written"].append(str(base) + "_overlay.png")
    (out / "report.json").write_text(json.dumps(report, indent=2))
    print(f"predict: {len(report['written'])} images written to {out}, {len(report['skipped'])} skipped (see report.json)")
    for s in report["skipped"]:
        print(f"  skipped {s['file']}: {s['reason']}")
    return report
