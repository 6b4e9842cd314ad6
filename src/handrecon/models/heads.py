"""Regression heads: hand parameters (pose, shape, viewpoint) and appearance (texture, lighting)."""

from __future__ import annotations

import torch
from torch import nn

from handrecon.joints import NUM_JOINTS

#: mean skin albedo of the method (RGB in [0, 1])
MEAN_SKIN = (0.78, 0.59, 0.59)
#: the 11 lighting numbers of the method
LIGHT_DIM = 11


def _mlp(cin: int, hidden: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(cin, h), nn.BatchNorm1d(h), nn.ReLU(inplace=True)]
        cin = h
    return nn.Sequential(*layers)


def _zero_head(cin: int, cout: int) -> nn.Linear:
    lin = nn.Linear(cin, cout)
    nn.init.zeros_(lin.weight)
    nn.init.zeros_(lin.bias)
    return lin


class KeypointEmbedding(nn.Module):
    """2D keypoints (B, 21, 3) [u, v in [-1, 1] of the crop, confidence] -> (B, out_features).

    The MLP reads each keypoint twice: in crop coordinates (where the hand is: the camera head) and
    centred on the confidence-weighted mean and divided by the RMS radius (the hand's articulation,
    invariant to its position and size in the crop). Coordinates are multiplied by their confidence,
    so a missing keypoint (confidence 0) reads as unknown rather than as the crop centre."""

    def __init__(self, out_features: int = 256, hidden: int = 256, eps: float = 1e-3):
        super().__init__()
        self.eps = eps
        self.mlp = nn.Sequential(nn.Linear(NUM_JOINTS * 5, hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, out_features), nn.ReLU(inplace=True))

    def forward(self, keypoints: torch.Tensor) -> torch.Tensor:
        uv, conf = keypoints[..., :2], keypoints[..., 2:3]  # (B, 21, 2), (B, 21, 1)
        w = conf / conf.sum(1, keepdim=True).clamp_min(self.eps)
        centred = uv - (w * uv).sum(1, keepdim=True)
        radius = ((w * centred * centred).sum((1, 2), keepdim=True)).clamp_min(self.eps**2).sqrt()
        x = torch.cat([uv * conf, centred / radius * conf, conf], -1)  # (B, 21, 5)
        return self.mlp(x.flatten(1))


#: the regressor's output heads (model.regressor_heads): linear = one linear layer per output;
#: mlp = the reference code's small MLP per output (h -> 128 -> ReLU -> out for pose and shape,
#: h -> 128 -> ReLU -> 32 -> out for rotation, camera/translation and scale)
REGRESSOR_HEADS = ("linear", "mlp")
#: how the heads start (model.regressor_init): zero = the last layer of every head is zero (the
#: mean hand, identity rotation, the camera's initial placement); reference = the reference code's
#: initialisation (PyTorch defaults, the scale and translation heads N(0, 0.001) with biases
#: 0.95 (scale) and (0, 0, 0.65) (translation, metres))
REGRESSOR_INITS = ("zero", "reference")
HEAD_WIDTH, SMALL_WIDTH = 128, 32


def _normal_(lin: nn.Linear, std: float, bias: float = 0.0) -> None:
    nn.init.normal_(lin.weight, 0.0, std)
    nn.init.constant_(lin.bias, bias)


def _head(cin: int, cout: int, kind: str, small: bool) -> nn.Module:
    if kind == "linear":
        return nn.Linear(cin, cout)
    layers: list[nn.Module] = [nn.Linear(cin, HEAD_WIDTH), nn.ReLU(inplace=True)]
    if small:  # the reference's rotation, translation and scale heads: one more (linear) 32-unit layer
        layers += [nn.Linear(HEAD_WIDTH, SMALL_WIDTH), nn.Linear(SMALL_WIDTH, cout)]
    else:
        layers += [nn.Linear(HEAD_WIDTH, cout)]
    return nn.Sequential(*layers)


def _last(head: nn.Module) -> nn.Linear:
    return head if isinstance(head, nn.Linear) else head[-1]


class HandRegressor(nn.Module):
    """global feature (B, C) -> raw hand parameters.

    Outputs a dict: pose (B, pose_dim) (PCA coefficients or axis-angle), betas (B, 10),
    rot (B, 3 or 6) (axis-angle or 6D), cam (B, 3) (du, dv, dz: the hand centre in the crop as
    offsets in [-1, 1]-normalised image units, and log-depth offset; or, for the reference
    placement, the translation T in metres) and scale (B, 1).
    ``heads`` (:data:`REGRESSOR_HEADS`) and ``init`` (:data:`REGRESSOR_INITS`): with init=zero every
    head starts at zero, i.e. at the mean hand, identity rotation, centred at depth z_init.
    With ``keypoint_features`` > 0 it also reads 2D keypoints (:class:`KeypointEmbedding`,
    concatenated to the image feature). With heads=mlp the layer indices inside the trunk and each
    head are the reference's (its base_layers, pose_reg, shape_reg, rot_reg, trans_reg, scale_reg
    are our trunk, pose, betas, rot, cam, scale).
    """

    def __init__(self, in_features: int, pose_dim: int, num_betas: int = 10, rot_repr: str = "6d",
                 hidden: tuple[int, ...] = (1024, 512), keypoint_features: int = 0, heads: str = "linear",
                 init: str = "zero"):
        super().__init__()
        if rot_repr not in ("6d", "axis_angle"):
            raise ValueError(f"model.rot_repr must be '6d' or 'axis_angle', got {rot_repr!r}")
        if heads not in REGRESSOR_HEADS:
            raise ValueError(f"model.regressor_heads={heads!r}: expected one of {REGRESSOR_HEADS}")
        if init not in REGRESSOR_INITS:
            raise ValueError(f"model.regressor_init={init!r}: expected one of {REGRESSOR_INITS}")
        self.rot_repr = rot_repr
        self.keypoints = KeypointEmbedding(keypoint_features) if keypoint_features > 0 else None
        self.trunk = _mlp(in_features + max(int(keypoint_features), 0), tuple(hidden))
        h = hidden[-1]
        self.pose = _head(h, pose_dim, heads, small=False)
        self.betas = _head(h, num_betas, heads, small=False)
        self.rot = _head(h, 6 if rot_repr == "6d" else 3, heads, small=True)
        self.cam = _head(h, 3, heads, small=True)
        self.scale = _head(h, 1, heads, small=True)
        if init == "zero":
            for head in (self.pose, self.betas, self.rot, self.cam, self.scale):
                nn.init.zeros_(_last(head).weight)
                nn.init.zeros_(_last(head).bias)
        else:
            for head, bias in ((self.scale, 0.95), (self.cam, 0.0)):
                for layer in (head if isinstance(head, nn.Sequential) else [head]):
                    if isinstance(layer, nn.Linear):
                        _normal_(layer, 0.001)
                nn.init.constant_(_last(head).bias, bias)
            with torch.no_grad():
                _last(self.cam).bias[2] = 0.65

    def forward(self, feat: torch.Tensor, keypoints: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """feat (B, C); keypoints (B, 21, 3) [u, v in [-1, 1], confidence], for a regressor that reads them."""
        if self.keypoints is not None:
            if keypoints is None:
                raise ValueError("HandRegressor: this regressor reads 2D keypoints (model.keypoints_in); none given")
            feat = torch.cat([feat, self.keypoints(keypoints)], -1)
        x = self.trunk(feat)
        rot = self.rot(x)
        if self.rot_repr == "6d":  # identity at zero output
            rot = rot + torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0], device=rot.device, dtype=rot.dtype)
        return {"pose": self.pose(x), "betas": self.betas(x), "rot": rot, "cam": self.cam(x), "scale": self.scale(x)}


class AppearanceHead(nn.Module):
    """low-level features (B, C, h, w) -> texture (B, V, 3) albedo in [0, 1] and lighting (B, 11).

    With ``texture_coeffs`` > 0 (a hand model with a texture space, e.g. NIMBLE) the texture output is
    that many coefficients of the model's texture space instead (zero at start: its mean texture).

    Texture = mean skin colour + a bounded regressed offset per vertex (per vertex works for any
    topology). Lighting: ambient intensity, directional intensity, ambient colour (3), directional
    colour (3), direction towards the light (3, camera frame; normalised by the renderer).
    """

    def __init__(self, in_channels: int, num_verts: int, width: int = 64, hidden: int = 256,
                 mean_skin: tuple[float, float, float] = MEAN_SKIN, max_offset: float = 0.4, texture_coeffs: int = 0):
        super().__init__()
        self.num_verts = num_verts
        self.max_offset = max_offset
        # a hand model with a texture space (NIMBLE): the head regresses its coefficients instead
        self.texture_coeffs = int(texture_coeffs)
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        self.mlp = nn.Sequential(nn.Linear(2 * width, hidden), nn.ReLU(inplace=True))
        self.texture = _zero_head(hidden, self.texture_coeffs or num_verts * 3)
        self.light = _zero_head(hidden, LIGHT_DIM)
        self.register_buffer("mean_skin", torch.tensor(mean_skin), persistent=False)
        # lighting at zero output: ambient 0.6, directional 0.5, white colours, light at the camera
        self.register_buffer(
            "light_bias",
            torch.tensor([0.4055, 0.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 0.0, 0.0, -1.0]),
            persistent=False,
        )

    def forward(self, low: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.mlp(self.conv(low))
        if self.texture_coeffs:  # (B, texture_coeffs): the texture space's coefficients (0: its mean)
            texture = self.texture(x)
        else:
            off = torch.tanh(self.texture(x)).view(-1, self.num_verts, 3) * self.max_offset
            texture = (self.mean_skin + off).clamp(0.0, 1.0)  # (B, V, 3)
        raw = self.light(x) + self.light_bias
        light = torch.cat([torch.sigmoid(raw[:, :8]), raw[:, 8:11]], -1)  # (B, 11)
        return texture, light


class ReferenceAppearanceHead(nn.Module):
    """The reference code's texture and lighting head (``texture_light_estimator``), same layers and
    names: low-level map (B, 32, 56, 56) -> conv 10x10/4 -> ReLU -> max pool 3/2 -> conv 3x3 -> ReLU
    -> max pool 2/2 -> (B, 256) -> per-face colours and 11 lighting numbers.

    forward -> (face_texture (B, F, 3) = tanh(mean colour + regressed offset): the albedo the
    reference renders, lighting (B, 11) as regressed: no squashing, as the reference).
    """

    def __init__(self, in_channels: int = 32, num_faces: int = 1538,
                 mean_colour: tuple[float, float, float] = (200 / 256, 150 / 256, 150 / 256)):
        super().__init__()
        self.num_faces = int(num_faces)
        self.base_layers = nn.Sequential(
            nn.Conv2d(in_channels, 48, kernel_size=10, stride=4, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(48, 64, kernel_size=3), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=2, stride=2),
        )  # fmt: skip
        self.texture_reg = nn.Sequential(nn.Linear(256, 64), nn.ReLU(inplace=True), nn.Linear(64, self.num_faces * 3))
        self.light_reg = nn.Sequential(nn.Linear(256, 64), nn.ReLU(inplace=True), nn.Linear(64, LIGHT_DIM))
        self.register_buffer("mean_colour", torch.tensor(mean_colour), persistent=False)
        for lin, mean in ((self.texture_reg[0], 0.0), (self.texture_reg[2], 0.0), (self.light_reg[0], 0.0),
                          (self.light_reg[2], 1.0)):
            nn.init.normal_(lin.weight, mean, 0.001)
            nn.init.zeros_(lin.bias)

    def forward(self, low: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.base_layers(low).flatten(1)
        if x.shape[1] != 256:
            raise ValueError(f"ReferenceAppearanceHead: the low-level map {tuple(low.shape[1:])} gives {x.shape[1]} "
                             "features, the head needs 256 (a 32 x 56 x 56 map: a 224 px image)")
        texture = torch.tanh(self.mean_colour + self.texture_reg(x).view(-1, self.num_faces, 3))
        return texture, self.light_reg(x)


class HeatmapAttention(nn.Module):
    """The reference code's optional ``heatmap_attention`` (its option use_2d_as_attention): the 2D
    branch's last features (B, 256, 64, 64) -> a (B, out_features) factor multiplied into the
    encoder's global feature. Same layers and names as the reference."""

    def __init__(self, in_channels: int = 256, out_features: int = 1536):
        super().__init__()
        self.base_layers = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, 64, kernel_size=10, stride=7, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(64, 64, kernel_size=5, stride=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3),
        )  # fmt: skip
        self.reg = nn.Sequential(nn.Linear(64, out_features))

    def forward(self, enc: torch.Tensor) -> torch.Tensor:
        return self.reg(self.base_layers(enc).flatten(1))
