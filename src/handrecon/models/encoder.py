"""Image encoder: any timm backbone -> a global feature and a low-level feature map.

No weights are ever downloaded at run time: ``pretrained=True`` needs ``weights_path`` (a local
file in timm's format, e.g. the ``pytorch_model.bin``/``model.safetensors`` of the model card).
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: how the encoder standardises its input image (model.encoder.normalize)
NORMALIZE = ("imagenet", "none")


class EncoderWeightsError(FileNotFoundError):
    pass


class Encoder(nn.Module):
    """timm backbone. forward(image (B, 3, S, S) in [0, 1]) -> (global (B, C), low (B, C_low, S/r, S/r)).

    ``low_level_reduction``: the stride of the low-level map used by the appearance head (4 as in
    the method: 32 x 56 x 56 for EfficientNet-B3 at 224 px).
    ``normalize``: ``imagenet`` (the image is standardised with ImageNet's mean and std, as timm's
    pretrained weights expect) or ``none`` (the image in [0, 1] as it is: the S2HAND reference code).
    ``timm_kwargs``: more arguments of ``timm.create_model`` (e.g. drop_path_rate, bn_momentum).
    The global feature is the average over the whole final map (at 224 px EfficientNet-B3's 7 x 7
    map: the reference code's 7 x 7 average pool).
    """

    def __init__(self, name: str = "efficientnet_b3", pretrained: bool = False, weights_path: str | None = None,
                 low_level_reduction: int = 4, normalize: str = "imagenet", timm_kwargs: dict | None = None):
        super().__init__()
        if normalize not in NORMALIZE:
            raise ValueError(f"model.encoder.normalize={normalize!r}: expected one of {NORMALIZE}")
        if name not in timm.list_models() and name not in timm.list_models(pretrained=False):
            raise ValueError(f"model.encoder.name={name!r} is not a timm model (try resnet18, efficientnet_b3, test_efficientnet)")
        kwargs = dict(timm_kwargs or {})
        if pretrained:
            if not weights_path:
                raise EncoderWeightsError(
                    f"model.encoder.pretrained=true needs model.encoder.weights_path=<local weights file for {name}>; "
                    "handrecon never downloads weights at run time (or set model.encoder.pretrained=false)"
                )
            if not Path(weights_path).is_file():
                raise EncoderWeightsError(f"encoder weights file not found: {weights_path} (model.encoder.weights_path)")
            kwargs["pretrained_cfg_overlay"] = {"file": str(weights_path)}
        self.name = name
        self.backbone = timm.create_model(name, pretrained=pretrained, num_classes=0, **kwargs)
        infos = self.backbone.feature_info
        idx = [i for i, f in enumerate(infos) if f["reduction"] == low_level_reduction]
        if not idx:
            raise ValueError(f"{name} has no feature map at reduction {low_level_reduction}: {[f['reduction'] for f in infos]}")
        self.low_index = idx[-1]
        self.low_channels = int(infos[self.low_index]["num_chs"])
        self.low_reduction = low_level_reduction
        self.global_channels = int(self.backbone.num_features)
        self.normalize = normalize
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if normalize == "imagenet" else ((0.0,) * 3, (1.0,) * 3)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (image - self.mean) / self.std if self.normalize == "imagenet" else image
        final, inter = self.backbone.forward_intermediates(x, indices=[self.low_index], norm=False)
        glob = self.backbone.forward_head(final, pre_logits=True)  # (B, C)
        return glob, inter[0]
