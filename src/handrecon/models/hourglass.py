"""The 2D keypoint branch: a stacked hourglass with integral (soft-argmax) keypoints."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from handrecon.joints import NUM_JOINTS


class Residual(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        mid = max(cout // 2, 1)
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, mid, 1),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True), nn.Conv2d(mid, mid, 3, padding=1),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True), nn.Conv2d(mid, cout, 1),
        )  # fmt: skip
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        return self.body(x) + self.skip(x)


class Hourglass(nn.Module):
    def __init__(self, depth: int, features: int):
        super().__init__()
        self.up1 = Residual(features, features)
        self.low1 = Residual(features, features)
        self.low2 = Hourglass(depth - 1, features) if depth > 1 else Residual(features, features)
        self.low3 = Residual(features, features)

    def forward(self, x):
        up = self.up1(x)
        low = self.low3(self.low2(self.low1(F.max_pool2d(x, 2))))
        return up + F.interpolate(low, size=up.shape[-2:], mode="nearest")


def soft_argmax(heatmaps: torch.Tensor, stride: float, beta: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Integral keypoints. heatmaps (B, J, h, w) logits -> (uv (B, J, 2) in input-image pixels, conf (B, J)).

    A heatmap cell (x, y) covers input pixels around ((x + 0.5) * stride - 0.5, ...) (pixel-centre
    convention). conf = 1 / (1 + spread) with spread the probability-weighted std in heatmap cells:
    near 1 for a sharp peak, near 0 for a flat map.
    """
    B, J, h, w = heatmaps.shape
    prob = torch.softmax(beta * heatmaps.reshape(B, J, h * w), -1).reshape(B, J, h, w)
    xs = (torch.arange(w, device=heatmaps.device, dtype=heatmaps.dtype) + 0.5) * stride - 0.5
    ys = (torch.arange(h, device=heatmaps.device, dtype=heatmaps.dtype) + 0.5) * stride - 0.5
    px, py = prob.sum(2), prob.sum(3)  # (B, J, w), (B, J, h)
    u, v = (px * xs).sum(-1), (py * ys).sum(-1)
    var = (px * xs**2).sum(-1) - u**2 + (py * ys**2).sum(-1) - v**2
    spread = torch.sqrt(var.clamp(min=0) + 1e-8) / stride
    return torch.stack([u, v], -1), 1.0 / (1.0 + spread)


class KeypointBranch(nn.Module):
    """Stacked hourglass on the image: forward(image (B, 3, S, S) normalised) -> list per stack of
    (heatmaps (B, 21, S/4, S/4), uv (B, 21, 2) pixels, conf (B, 21))."""

    def __init__(self, num_stacks: int = 2, features: int = 256, depth: int = 4):
        super().__init__()
        f = features
        self.stem = nn.Sequential(
            nn.Conv2d(3, f // 4, 7, stride=2, padding=3), nn.BatchNorm2d(f // 4), nn.ReLU(inplace=True),
            Residual(f // 4, f // 2), nn.MaxPool2d(2), Residual(f // 2, f // 2), Residual(f // 2, f),
        )  # fmt: skip
        self.stride = 4
        self.hgs = nn.ModuleList([Hourglass(depth, f) for _ in range(num_stacks)])
        self.feats = nn.ModuleList(
            [nn.Sequential(Residual(f, f), nn.Conv2d(f, f, 1), nn.BatchNorm2d(f), nn.ReLU(inplace=True)) for _ in range(num_stacks)]
        )
        self.outs = nn.ModuleList([nn.Conv2d(f, NUM_JOINTS, 1) for _ in range(num_stacks)])
        self.merge_feats = nn.ModuleList([nn.Conv2d(f, f, 1) for _ in range(num_stacks - 1)])
        self.merge_outs = nn.ModuleList([nn.Conv2d(NUM_JOINTS, f, 1) for _ in range(num_stacks - 1)])

    def forward(self, x: torch.Tensor):
        x = self.stem(x)
        stages = []
        for i, hg in enumerate(self.hgs):
            y = self.feats[i](hg(x))
            hm = self.outs[i](y)
            uv, conf = soft_argmax(hm, self.stride)
            stages.append((hm, uv, conf))
            if i < len(self.hgs) - 1:
                x = x + self.merge_feats[i](y) + self.merge_outs[i](hm)
        return stages
