"""The OpenPose hand keypoint network and its multi-scale inference on a square hand crop.

Network (Simon et al., "Hand Keypoint Detection in Single Images using Multiview
Bootstrapping", CVPR 2017; as distributed by OpenPose and converted to PyTorch by
pytorch-openpose): a VGG-19-style trunk (conv1_1 .. conv5_3_CPM, three 2x2 max-pools, so
stride 8) giving 128 feature channels, then a 6-stage convolutional pose machine. Stage 1
(conv6_1_CPM, conv6_2_CPM, 1x1 convolutions) predicts 22 heatmaps from the features; stages
2..6 (Mconv1..Mconv7_stage<t>: five 7x7 and two 1x1 convolutions) refine them from
[previous heatmaps (22), features (128)]. Every convolution but the last of each stage is
followed by a ReLU. Output: 22 heatmaps at 1/8 resolution, 21 keypoints + background.

Parameter names are the Caffe layer names (``conv1_1.weight`` ... ``Mconv7_stage6.bias``), so
the user's ``hand_pose_model.pth`` state dict loads with ``strict=True`` as it is.

Keypoint order: channel k (k < 21) is OpenPose hand keypoint k: 0 wrist, 1-4 thumb, 5-8 index,
9-12 middle, 13-16 ring, 17-20 little, each from base to tip. This is the CMU Panoptic hand
order the network was trained on and it is FreiHAND's order, i.e. handrecon's canonical order
(:mod:`handrecon.joints`); no reordering is needed. Channel 21 is the background.

Input: the network was trained on BGR images scaled as ``x / 256 - 0.5``; :func:`preprocess`
does that from handrecon's RGB images. Padding (to a multiple of the stride, and crop parts
outside the image) is grey (128), as in OpenPose.

Inference (:class:`OpenPoseHand`), per image: the square hand box is warped to
``boxsize * s`` px for each scale ``s``, padded to a multiple of 8 and run through the network;
each scale's heatmaps are upsampled by 8 (bicubic), unpadded, resized to ``boxsize`` and
averaged over scales. Each keypoint's averaged heatmap is smoothed (Gaussian, sigma 3 px) and
its maximum taken, refined to sub-pixel precision with a log-parabola fit on the 3 x 3
neighbourhood; the confidence is the averaged heatmap's value there, clipped to [0, 1]. Below
``threshold`` the keypoint counts as not found (conf 0, xy 0). Peaks are mapped back to image
pixels with the inverse crop affine. All of it runs batched in torch (on the GPU when given).

NOT VERIFIED HERE: the trained weights cannot be downloaded in handrecon's build environment,
so the detection accuracy of this implementation with the real ``hand_pose_model.pth`` has not
been measured. What is tested: the layer layout/state-dict keys (round-trip with strict
loading), output shapes, and the whole post-processing chain (crop, padding, upsampling,
multi-scale averaging, peak extraction, mapping back) against closed-form cases.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from handrecon.detect.backends import Box, Detection, box_matrix, crop_to_image, resolve_box, warp_crop
from handrecon.joints import NUM_JOINTS

STRIDE = 8
NUM_HEATMAPS = 22  # 21 keypoints + background
PAD_VALUE = 128
DEFAULT_SCALES = (0.5, 1.0, 1.5, 2.0)
BOXSIZE = 368

_POOL = "pool"
#: (name, in channels, out channels, kernel) of the trunk; _POOL marks a 2x2 max-pool
_TRUNK: tuple = (
    ("conv1_1", 3, 64, 3), ("conv1_2", 64, 64, 3), _POOL,
    ("conv2_1", 64, 128, 3), ("conv2_2", 128, 128, 3), _POOL,
    ("conv3_1", 128, 256, 3), ("conv3_2", 256, 256, 3), ("conv3_3", 256, 256, 3), ("conv3_4", 256, 256, 3), _POOL,
    ("conv4_1", 256, 512, 3), ("conv4_2", 512, 512, 3), ("conv4_3", 512, 512, 3), ("conv4_4", 512, 512, 3),
    ("conv5_1", 512, 512, 3), ("conv5_2", 512, 512, 3), ("conv5_3_CPM", 512, 128, 3),
)  # fmt: skip
FEATURES = 128
_STAGE1: tuple = (("conv6_1_CPM", FEATURES, 512, 1), ("conv6_2_CPM", 512, NUM_HEATMAPS, 1))


def _refinement_stage(t: int) -> tuple:
    c = NUM_HEATMAPS + FEATURES  # 150 input channels: previous heatmaps, then the features
    convs = [(f"Mconv1_stage{t}", c, 128, 7)]
    convs += [(f"Mconv{j}_stage{t}", 128, 128, 7) for j in range(2, 6)]
    convs += [(f"Mconv6_stage{t}", 128, 128, 1), (f"Mconv7_stage{t}", 128, NUM_HEATMAPS, 1)]
    return tuple(convs)


_STAGES: tuple = (_STAGE1,) + tuple(_refinement_stage(t) for t in range(2, 7))

WEIGHTS_HELP = (
    "The OpenPose hand weights cannot be downloaded from handrecon's build environment; get them yourself: "
    "`hand_pose_model.pth` is the OpenPose hand model converted to PyTorch, linked from the 'Model Download' "
    "section of the pytorch-openpose README (https://github.com/Hzzone/pytorch-openpose); it is a conversion of "
    "OpenPose's models/hand/pose_iter_102000.caffemodel (fetched by OpenPose's models/getModels script). "
    "Put it e.g. at models/hand_pose_model.pth and pass it with `--weights models/hand_pose_model.pth` "
    "(python -m handrecon.detect --backend openpose ...)."
)


class OpenPoseWeightsError(ValueError):
    """A weights file that is not the OpenPose hand model's state dict."""


class HandPoseNet(nn.Module):
    """OpenPose hand network. x: (B, 3, H, W), H and W multiples of 8 -> heatmaps (B, 22, H/8, W/8)."""

    def __init__(self) -> None:
        super().__init__()
        for spec in _TRUNK + sum(_STAGES, ()):
            if spec is _POOL:
                continue
            name, cin, cout, k = spec
            setattr(self, name, nn.Conv2d(cin, cout, k, stride=1, padding=k // 2))

    def _run(self, layers: tuple, x: torch.Tensor, relu_last: bool) -> torch.Tensor:
        last = len(layers) - 1
        for i, spec in enumerate(layers):
            if spec is _POOL:
                x = F.max_pool2d(x, kernel_size=2, stride=2)
                continue
            x = getattr(self, spec[0])(x)
            if i < last or relu_last:
                x = F.relu(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self._run(_TRUNK, x, relu_last=True)  # (B, 128, H/8, W/8)
        heat = self._run(_STAGES[0], feats, relu_last=False)  # (B, 22, H/8, W/8)
        for stage in _STAGES[1:]:
            heat = self._run(stage, torch.cat([heat, feats], 1), relu_last=False)
        return heat

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, map_location: str | torch.device = "cpu") -> HandPoseNet:
        """Load the user's ``hand_pose_model.pth`` (keys ``conv1_1.weight`` ...), strictly.

        Also accepted: the same keys under pytorch-openpose's module prefixes
        (``model1_0.conv1_1.weight``), a ``module.`` prefix, or a ``{"state_dict": ...}`` wrapper.
        Missing file -> FileNotFoundError saying where to get it; other keys or shapes ->
        :class:`OpenPoseWeightsError` listing them."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"OpenPose hand weights not found: {path}. {WEIGHTS_HELP}")
        try:
            sd = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable file gets the same clear message
            raise OpenPoseWeightsError(f"{path} is not a readable PyTorch state dict ({type(e).__name__}: {e}). {WEIGHTS_HELP}") from e
        if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
            sd = sd["state_dict"]
        if not isinstance(sd, dict):
            raise OpenPoseWeightsError(f"{path} holds a {type(sd).__name__}, not a state dict. {WEIGHTS_HELP}")
        sd = {_strip_prefix(k): v for k, v in sd.items()}
        net = cls()
        expected = net.state_dict()
        missing = [k for k in expected if k not in sd]
        unexpected = [k for k in sd if k not in expected]
        if missing or unexpected:
            raise OpenPoseWeightsError(
                f"{path} is not the OpenPose hand model: {len(missing)} missing keys {_few(missing)} and "
                f"{len(unexpected)} unexpected keys {_few(unexpected)} (expected the {len(expected)} keys "
                f"conv1_1.weight ... Mconv7_stage6.bias of hand_pose_model.pth; the body model "
                f"body_pose_model.pth has other keys)"
            )
        wrong = [f"{k}: {tuple(sd[k].shape)} != {tuple(v.shape)}" for k, v in expected.items() if tuple(sd[k].shape) != tuple(v.shape)]
        if wrong:
            raise OpenPoseWeightsError(f"{path}: {len(wrong)} tensors have the wrong shape: {_few(wrong)}")
        net.load_state_dict(sd, strict=True)
        return net


def _strip_prefix(key: str) -> str:
    key = key[len("module."):] if key.startswith("module.") else key
    return re.sub(r"^model\d+(_\d+)?\.", "", key)


def _few(items: list[str], n: int = 8) -> str:
    return "[" + ", ".join(items[:n]) + (", ..." if len(items) > n else "") + "]"


# ---------------------------------------------------------------- pure pre/post-processing


def preprocess(images: np.ndarray) -> torch.Tensor:
    """RGB uint8 images (B, H, W, 3) -> the network's input (B, 3, H, W): BGR, x / 256 - 0.5."""
    x = torch.from_numpy(np.ascontiguousarray(images[..., ::-1])).float()
    return (x / 256.0 - 0.5).permute(0, 3, 1, 2).contiguous()


def pad_to_stride(images: np.ndarray, stride: int = STRIDE, value: int = PAD_VALUE) -> np.ndarray:
    """Pad (B, H, W, C) at the bottom and right to multiples of ``stride`` with ``value``."""
    h, w = images.shape[1:3]
    ph, pw = (-h) % stride, (-w) % stride
    return np.pad(images, ((0, 0), (0, ph), (0, pw), (0, 0)), constant_values=value)


def heatmaps_to_grid(heat: torch.Tensor, valid_hw: tuple[int, int], out_size: int, stride: int = STRIDE) -> torch.Tensor:
    """Network heatmaps (B, K, h, w) of a padded input whose top-left ``valid_hw`` = (H, W) px
    are the crop -> heatmaps (B, K, out_size, out_size) on the crop's ``out_size`` grid.

    Upsamples by ``stride`` (bicubic, pixel-centre aligned: cell j covers input pixels
    stride*j .. stride*j + stride - 1), drops the padding, resizes to out_size."""
    h, w = heat.shape[-2:]
    up = F.interpolate(heat, size=(h * stride, w * stride), mode="bicubic", align_corners=False)
    up = up[..., : valid_hw[0], : valid_hw[1]]
    return F.interpolate(up, size=(out_size, out_size), mode="bicubic", align_corners=False)


def gaussian_blur(x: torch.Tensor, sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """Separable Gaussian smoothing of (B, K, H, W), edges replicated (scipy's
    ``gaussian_filter(mode="nearest", truncate=4.0)`` per channel)."""
    if sigma <= 0:
        return x
    r = int(truncate * sigma + 0.5)
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    g = g / g.sum()
    B, K, H, W = x.shape
    y = x.reshape(B * K, 1, H, W)
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="replicate"), g.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="replicate"), g.view(1, 1, -1, 1))
    return y.reshape(B, K, H, W)


def _log_parabola_offset(left: torch.Tensor, mid: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Sub-pixel offset of the maximum of a Gaussian through three samples (exact for a Gaussian);
    0 where a sample is not positive or the samples are not a strict peak. Clamped to [-0.5, 0.5]."""
    ok = (left > 0) & (mid > 0) & (right > 0)
    tiny = torch.finfo(mid.dtype).tiny
    ll, lm, lr = (torch.log(v.clamp_min(tiny)) for v in (left, mid, right))
    den = ll - 2 * lm + lr
    ok = ok & (den < 0)
    off = 0.5 * (ll - lr) / torch.where(ok, den, torch.ones_like(den))
    return torch.where(ok, off, torch.zeros_like(off)).clamp(-0.5, 0.5)


def find_peaks(heat: torch.Tensor, sigma: float = 3.0, threshold: float = 0.05, subpixel: bool = True
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """One peak per heatmap. heat: (B, K, H, W) -> uv (B, K, 2) pixels (u right, v down), score (B, K).

    The maximum of the Gaussian-smoothed map (``sigma`` px), refined with a log-parabola fit;
    the score is the raw map's value at that pixel clipped to [0, 1]. Score < threshold ->
    score 0 and uv (0, 0) (not found)."""
    B, K, H, W = heat.shape
    sm = gaussian_blur(heat, sigma)
    flat = sm.reshape(B, K, H * W)
    idx = flat.argmax(-1)  # (B, K)
    iy, ix = idx // W, idx % W
    score = heat.reshape(B, K, H * W).gather(-1, idx[..., None])[..., 0].clamp(0.0, 1.0)
    u, v = ix.to(heat.dtype), iy.to(heat.dtype)
    if subpixel:
        def at(yy, xx):
            return flat.gather(-1, (yy.clamp(0, H - 1) * W + xx.clamp(0, W - 1))[..., None])[..., 0]

        mid = at(iy, ix)
        du = _log_parabola_offset(at(iy, ix - 1), mid, at(iy, ix + 1))
        dv = _log_parabola_offset(at(iy - 1, ix), mid, at(iy + 1, ix))
        u = u + torch.where((ix > 0) & (ix < W - 1), du, torch.zeros_like(du))
        v = v + torch.where((iy > 0) & (iy < H - 1), dv, torch.zeros_like(dv))
    uv = torch.stack([u, v], -1)
    found = score >= threshold
    score = torch.where(found, score, torch.zeros_like(score))
    uv = torch.where(found[..., None], uv, torch.zeros_like(uv))
    return uv, score


# ---------------------------------------------------------------- the detector


class OpenPoseHand:
    """Multi-scale OpenPose hand detection on square hand boxes (see the module docstring).

    ``net`` is any module mapping (B, 3, P, P) (P a multiple of 8) to (B, >=21, P/8, P/8)
    heatmaps, normally :class:`HandPoseNet` with the real weights."""

    def __init__(self, net: nn.Module, device: str | torch.device = "cpu", scales: Sequence[float] = DEFAULT_SCALES,
                 boxsize: int = BOXSIZE, sigma: float = 3.0, threshold: float = 0.05, box_mode: str = "full"):
        if not scales or any(not (s > 0) for s in scales):
            raise ValueError(f"scales must be positive numbers, got {scales!r}")
        if boxsize < STRIDE:
            raise ValueError(f"boxsize must be >= {STRIDE}, got {boxsize}")
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.scales = tuple(float(s) for s in scales)
        self.boxsize = int(boxsize)
        self.sigma = float(sigma)
        self.threshold = float(threshold)
        self.box_mode = box_mode

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str | torch.device = "cpu", **kwargs) -> OpenPoseHand:
        return cls(HandPoseNet.from_checkpoint(path), device=device, **kwargs)

    def crop_sizes(self) -> list[int]:
        """Network input side (before padding) for each scale."""
        return [max(STRIDE, int(round(self.boxsize * s))) for s in self.scales]

    @torch.no_grad()
    def averaged_heatmaps(self, images: list[np.ndarray], boxes: Sequence[Box]) -> torch.Tensor:
        """Scale-averaged heatmaps (B, K, boxsize, boxsize) on each box's ``boxsize`` crop grid
        (image -> grid affine: ``box_matrix(box, boxsize)``)."""
        acc = None
        for S in self.crop_sizes():
            crops = np.stack([warp_crop(im, box_matrix(b, S), S, border=PAD_VALUE) for im, b in zip(images, boxes)])
            x = preprocess(pad_to_stride(crops)).to(self.device)  # (B, 3, P, P)
            heat = self.net(x).float()  # (B, K, P/8, P/8)
            grid = heatmaps_to_grid(heat, (S, S), self.boxsize)
            acc = grid if acc is None else acc + grid
        return acc / len(self.scales)

    def detect_batch(self, images: list[np.ndarray], boxes: Sequence[Box | None] | None = None) -> list[Detection]:
        """images: (H, W, 3) uint8 RGB each; boxes: (cx, cy, side) or None (-> ``box_mode``).
        Returns per image (xy (21, 2) image pixels, conf (21,) in [0, 1])."""
        if not images:
            return []
        boxes = [None] * len(images) if boxes is None else list(boxes)
        sq = [resolve_box(b, im.shape, self.box_mode) for im, b in zip(images, boxes)]
        heat = self.averaged_heatmaps(images, sq)[:, :NUM_JOINTS]
        uv, score = find_peaks(heat, self.sigma, self.threshold)
        uv, score = uv.cpu().numpy(), score.cpu().numpy()
        out = []
        for i, b in enumerate(sq):
            xy = crop_to_image(uv[i], box_matrix(b, self.boxsize))
            xy = np.where(score[i][:, None] > 0, xy, 0.0).astype(np.float32)
            out.append((xy, score[i].astype(np.float32)))
        return out

    def detect(self, image: np.ndarray, box: Box | None = None) -> Detection:
        """One image: (xy (21, 2) image pixels, conf (21,) in [0, 1])."""
        return self.detect_batch([image], [box])[0]


def num_parameters() -> int:
    """Parameter count of :class:`HandPoseNet` computed from the layer table (no allocation)."""
    n = 0
    for spec in _TRUNK + sum(_STAGES, ()):
        if spec is not _POOL:
            _, cin, cout, k = spec
            n += cin * cout * k * k + cout
    return n


__all__ = [
    "BOXSIZE", "DEFAULT_SCALES", "HandPoseNet", "NUM_HEATMAPS", "OpenPoseHand", "OpenPoseWeightsError", "PAD_VALUE",
    "STRIDE", "WEIGHTS_HELP", "find_peaks", "gaussian_blur", "heatmaps_to_grid", "num_parameters", "pad_to_stride",
    "preprocess",
]
