"""The 2D keypoint branch: a stacked hourglass with integral (soft-argmax) keypoints.

The layout follows the S2HAND reference code's hourglass (Newell et al.'s stacked hourglass as
written by Liuhao Ge): the module and attribute names are the reference's, so its weights load by
name (``handrecon.convert``). With ``features=256, num_stacks=2, num_modules=2, depth=4`` it is the
reference's 2D branch (12.6 M parameters); the input is zero-padded on the right and bottom to a
multiple of ``4 * 2**depth`` px (224 -> 256, giving 64 x 64 heatmaps, as the reference does).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from handrecon.joints import NUM_JOINTS
from handrecon.models.encoder import IMAGENET_MEAN, IMAGENET_STD

#: how the branch standardises its [0, 1] input (model.kp_branch.input_norm): imagenet = ImageNet
#: mean/std, half = image - 0.5 (the reference code)
INPUT_NORMS = ("imagenet", "half")
#: how heatmaps become keypoints (model.kp_branch.decode): cells = softmax over the heatmap cells,
#: cell centres at (i + 0.5) * stride - 0.5 px; upsampled = the reference code's: heatmaps bilinearly
#: upsampled (align_corners) to the padded input size, softmax over its pixels, expected pixel index
DECODES = ("cells", "upsampled")


class Residual(nn.Module):
    """Pre-activation bottleneck: BN-ReLU-1x1 (cout/2) - BN-ReLU-3x3 - BN-ReLU-1x1 (cout), + skip
    (a 1x1 convolution ``conv4`` where the widths differ)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        mid = max(cout // 2, 1)
        self.bn = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, mid, 1)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, cout, 1)
        self.conv4 = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x):
        y = self.conv1(F.relu(self.bn(x)))
        y = self.conv2(F.relu(self.bn1(y)))
        y = self.conv3(F.relu(self.bn2(y)))
        return y + (x if self.conv4 is None else self.conv4(x))


def _residuals(n: int, f: int) -> nn.ModuleList:
    return nn.ModuleList([Residual(f, f) for _ in range(n)])


def _run(mods: nn.ModuleList, x):
    for m in mods:
        x = m(x)
    return x


class Hourglass(nn.Module):
    """One hourglass of ``depth`` levels, ``num_modules`` residual modules per step."""

    def __init__(self, depth: int, features: int, num_modules: int = 2):
        super().__init__()
        self.depth = depth
        self.up1_ = _residuals(num_modules, features)
        self.low1_ = _residuals(num_modules, features)
        if depth > 1:
            self.low2 = Hourglass(depth - 1, features, num_modules)
        else:
            self.low2_ = _residuals(num_modules, features)
        self.low3_ = _residuals(num_modules, features)

    def forward(self, x):
        up = _run(self.up1_, x)
        low = _run(self.low1_, F.max_pool2d(x, 2))
        low = self.low2(low) if self.depth > 1 else _run(self.low2_, low)
        low = _run(self.low3_, low)
        return up + F.interpolate(low, size=up.shape[-2:], mode="nearest")


def soft_argmax(heatmaps: torch.Tensor, stride: float, beta: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Integral keypoints. heatmaps (B, J, h, w) logits -> (uv (B, J, 2) in input-image pixels, conf (B, J)).

    A heatmap cell (x, y) covers input pixels around ((x + 0.5) * stride - 0.5, ...) (pixel-centre
    convention). conf = 1 / (1 + spread) with spread the probability-weighted std in heatmap cells:
    near 1 for a sharp peak, near 0 for a flat map.
    """
    B, J, h, w = heatmaps.shape
    xs = (torch.arange(w, device=heatmaps.device, dtype=heatmaps.dtype) + 0.5) * stride - 0.5
    ys = (torch.arange(h, device=heatmaps.device, dtype=heatmaps.dtype) + 0.5) * stride - 0.5
    return _integral(beta * heatmaps, xs, ys, stride)


def soft_argmax_upsampled(heatmaps: torch.Tensor, size: tuple[int, int], stride: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference code's integral keypoints: heatmaps (B, J, h, w) bilinearly upsampled (corners
    aligned) to ``size`` = (H, W) px, softmax over the H x W pixels, expected pixel index -> (uv
    (B, J, 2) px, conf (B, J) as :func:`soft_argmax`, the spread in units of ``stride`` px)."""
    up = F.interpolate(heatmaps, size=size, mode="bilinear", align_corners=True)
    xs = torch.arange(size[1], device=heatmaps.device, dtype=heatmaps.dtype)
    ys = torch.arange(size[0], device=heatmaps.device, dtype=heatmaps.dtype)
    return _integral(up, xs, ys, stride)


def _integral(logits: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor, stride: float):
    B, J, h, w = logits.shape
    prob = torch.softmax(logits.reshape(B, J, h * w), -1).reshape(B, J, h, w)
    px, py = prob.sum(2), prob.sum(3)  # (B, J, w), (B, J, h)
    u, v = (px * xs).sum(-1), (py * ys).sum(-1)
    var = (px * xs**2).sum(-1) - u**2 + (py * ys**2).sum(-1) - v**2
    spread = torch.sqrt(var.clamp(min=0) + 1e-8) / stride
    return torch.stack([u, v], -1), 1.0 / (1.0 + spread)


class KeypointBranch(nn.Module):
    """Stacked hourglass on the image: forward(image (B, 3, S, S) in [0, 1]) -> list per stack of
    (heatmaps (B, 21, S'/4, S'/4), uv (B, 21, 2) pixels of the image, conf (B, 21)), S' = S padded
    on the right and bottom to a multiple of ``4 * 2**depth``. With ``return_encoding`` also the
    last stack's features (B, features, S'/4, S'/4) (the reference's ``encoding[-1]``)."""

    def __init__(self, num_stacks: int = 2, features: int = 256, depth: int = 4, num_modules: int = 2,
                 input_norm: str = "half", decode: str = "cells"):
        super().__init__()
        if input_norm not in INPUT_NORMS:
            raise ValueError(f"model.kp_branch.input_norm={input_norm!r}: expected one of {INPUT_NORMS}")
        if decode not in DECODES:
            raise ValueError(f"model.kp_branch.decode={decode!r}: expected one of {DECODES}")
        f = features
        self.input_norm, self.decode, self.depth = input_norm, decode, int(depth)
        self.stride = 4
        self.pad_multiple = self.stride * 2 ** self.depth
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        # stem: 7x7/2 conv, then residuals and a max pool: stride 4
        self.conv1_ = nn.Conv2d(3, f // 4, 7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(f // 4)
        self.r1 = Residual(f // 4, f // 2)
        self.r4 = Residual(f // 2, f // 2)
        self.r5 = Residual(f // 2, f)
        self.hourglass = nn.ModuleList([Hourglass(depth, f, num_modules) for _ in range(num_stacks)])
        # per stack: num_modules residuals (flat list, stack-major), a 1x1 conv-BN-ReLU, the heatmaps
        # (made stack by stack: the order in which the weights are drawn at initialisation)
        residuals, lins = [], []
        for _ in range(num_stacks):
            residuals += [Residual(f, f) for _ in range(num_modules)]
            lins.append(nn.Sequential(nn.Conv2d(f, f, 1), nn.BatchNorm2d(f), nn.ReLU(inplace=True)))
        self.Residual = nn.ModuleList(residuals)
        self.lin_ = nn.ModuleList(lins)
        self.tmpOut = nn.ModuleList([nn.Conv2d(f, NUM_JOINTS, 1) for _ in range(num_stacks)])
        # between stacks: features and heatmaps mapped back and added to the next stack's input
        self.ll_ = nn.ModuleList([nn.Conv2d(f, f, 1) for _ in range(num_stacks - 1)])
        self.tmpOut_ = nn.ModuleList([nn.Conv2d(NUM_JOINTS, f, 1) for _ in range(num_stacks - 1)])
        self.num_modules = int(num_modules)

    def forward(self, image: torch.Tensor, return_encoding: bool = False):
        H, W = image.shape[-2:]
        m = self.pad_multiple
        ph, pw = (-H) % m, (-W) % m
        x = F.pad(image, (0, pw, 0, ph)) if ph or pw else image  # zeros, before standardising (as the reference)
        x = x - 0.5 if self.input_norm == "half" else (x - self.mean) / self.std
        size = tuple(x.shape[-2:])
        x = self.r5(self.r4(F.max_pool2d(self.r1(F.relu(self.bn1(self.conv1_(x)))), 2)))
        stages, enc = [], None
        nm = self.num_modules
        for i, hg in enumerate(self.hourglass):
            y = self.lin_[i](_run(self.Residual[i * nm:(i + 1) * nm], hg(x)))
            hm = self.tmpOut[i](y)
            if self.decode == "cells":
                uv, conf = soft_argmax(hm, self.stride)
            else:
                uv, conf = soft_argmax_upsampled(hm, size, self.stride)
            stages.append((hm, uv, conf))
            if i < len(self.hourglass) - 1:
                x = x + self.ll_[i](y) + self.tmpOut_[i](hm)
            enc = y
        return (stages, enc) if return_encoding else stages
