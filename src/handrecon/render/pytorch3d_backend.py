"""Optional pytorch3d backend behind the :class:`~handrecon.render.base.Renderer` interface.

pytorch3d has no PyPI wheel, so it is optional: this module imports without it and the class raises a
clear ImportError when constructed. Mapping onto pytorch3d:
- cameras: ``pytorch3d.utils.cameras_from_opencv_projection`` with R = I, t = 0 and our K, so the
  pytorch3d world frame is our OpenCV camera frame (it handles the axis flips and the screen/NDC
  conversion, pixel centres at integer coordinates);
- geometry: ``MeshRasterizer`` (no back-face culling, perspective-correct barycentrics);
- colour: ``SoftPhongShader`` with ``DirectionalLights`` (our ambient / directional / direction, no
  specular) on ``TexturesVertex`` albedo, i.e. Lambert shading per pixel ('phong' in the soft backend);
- silhouette: ``SoftSilhouetteShader``; depth: the z-buffer of the nearest face (0 where empty).
``sigma`` is in the same squared-NDC units as :class:`~handrecon.render.soft.SoftRasterizer` (pytorch3d's
own convention) and ``gamma`` in metres (converted with znear / zfar).
"""

from __future__ import annotations

import importlib.util
import math

import torch
from torch import Tensor

from .base import Lighting, Renderer, RenderOutput, UVTexture, check_inputs, parse_image_size

INSTALL_MSG = (
    "pytorch3d is not installed; it has no PyPI wheel: install it following "
    "https://github.com/facebookresearch/pytorch3d/blob/main/INSTALL.md, or use renderer=soft"
)


def pytorch3d_available() -> bool:
    return importlib.util.find_spec("pytorch3d") is not None


class PyTorch3DRenderer(Renderer):
    """pytorch3d rasteriser + soft Phong / silhouette shaders (Lambert lighting, no specular).

    Args:
        sigma: silhouette edge sharpness, squared NDC units (shorter side = 2).
        gamma: depth temperature of the colour blending, metres.
        faces_per_pixel: K nearest faces kept per pixel by the rasteriser.
        edge_eps: coverage at the blur radius (blur_radius = ln(1 / eps - 1) * sigma, squared NDC).
        background_color: RGB used where nothing is drawn and no background image is passed.
        znear, zfar: depth range (metres) used to normalise depth in the colour blending.
        bin_size, max_faces_per_bin: passed to pytorch3d's RasterizationSettings (None: its heuristics).
    """

    def __init__(
        self,
        sigma: float = 1e-4,
        gamma: float = 1e-4,
        faces_per_pixel: int = 8,
        edge_eps: float = 1e-4,
        background_color: tuple[float, float, float] | list[float] = (0.0, 0.0, 0.0),
        znear: float = 0.01,
        zfar: float = 10.0,
        bin_size: int | None = None,
        max_faces_per_bin: int | None = None,
    ):
        if not pytorch3d_available():
            raise ImportError(INSTALL_MSG)
        super().__init__()
        if sigma <= 0 or gamma <= 0 or not 0 < edge_eps < 0.5 or not 0 < znear < zfar:
            raise ValueError(
                "renderer=pytorch3d: need sigma > 0, gamma > 0, 0 < edge_eps < 0.5 and 0 < znear < zfar, got "
                f"sigma={sigma}, gamma={gamma}, edge_eps={edge_eps}, znear={znear}, zfar={zfar}"
            )
        bg = [float(c) for c in background_color]
        if len(bg) != 3:
            raise ValueError(
                f"renderer=pytorch3d: background_color must have 3 values, got {background_color!r}"
            )
        self.sigma = float(sigma)
        self.gamma = float(gamma)
        self.faces_per_pixel = int(faces_per_pixel)
        self.edge_eps = float(edge_eps)
        self.background_color = tuple(bg)
        self.znear, self.zfar = float(znear), float(zfar)
        self.bin_size = bin_size
        self.max_faces_per_bin = max_faces_per_bin

    def forward(
        self,
        verts: Tensor,
        faces: Tensor,
        colors: Tensor,
        K: Tensor,
        image_size: int | tuple[int, int],
        lighting: Lighting | None = None,
        background: Tensor | None = None,
    ) -> RenderOutput:
        from pytorch3d.renderer import (
            BlendParams,
            DirectionalLights,
            MeshRasterizer,
            RasterizationSettings,
            SoftPhongShader,
            SoftSilhouetteShader,
            TexturesUV,
            TexturesVertex,
        )
        from pytorch3d.structures import Meshes
        from pytorch3d.utils import cameras_from_opencv_projection

        H, W = parse_image_size(image_size)
        check_inputs(verts, faces, colors, K, H, W, lighting, background)
        B, dev, dt = verts.shape[0], verts.device, torch.float32  # pytorch3d rasterises in float32
        verts = verts.to(dt)
        lighting = Lighting.default(B, dev, dt) if lighting is None else lighting.to(dtype=dt)
        if lighting.sh is not None:
            raise NotImplementedError(
                "renderer=pytorch3d: spherical-harmonics lighting is only in renderer=soft"
            )

        cameras = cameras_from_opencv_projection(
            R=torch.eye(3, dtype=dt, device=dev).expand(B, 3, 3),
            tvec=torch.zeros(B, 3, dtype=dt, device=dev),
            camera_matrix=K.to(dt),
            image_size=torch.tensor([[H, W]], dtype=dt, device=dev).expand(B, 2),
        )
        faces = faces.to(device=dev, dtype=torch.long)
        if isinstance(colors, UVTexture):  # same texel convention as handrecon.render.base.sample_uv
            textures = TexturesUV(
                maps=colors.maps.to(device=dev, dtype=dt),
                faces_uvs=colors.faces_uvs.to(device=dev, dtype=torch.long)[None].expand(B, -1, -1),
                verts_uvs=colors.verts_uvs.to(device=dev, dtype=dt)[None].expand(B, -1, -1),
                padding_mode="border",
                align_corners=False,
            )
        else:
            textures = TexturesVertex(verts_features=colors.to(dt))
        meshes = Meshes(verts=verts, faces=faces[None].expand(B, -1, -1).contiguous(), textures=textures)
        settings = RasterizationSettings(
            image_size=(H, W),
            blur_radius=math.log(1.0 / self.edge_eps - 1.0) * self.sigma,
            faces_per_pixel=self.faces_per_pixel,
            bin_size=self.bin_size,
            max_faces_per_bin=self.max_faces_per_bin,
            perspective_correct=True,
            cull_backfaces=False,
        )
        fragments = MeshRasterizer(cameras=cameras, raster_settings=settings)(meshes)
        blend = BlendParams(
            sigma=self.sigma, gamma=self.gamma / (self.zfar - self.znear), background_color=(0.0, 0.0, 0.0)
        )
        lights = DirectionalLights(
            device=dev,
            ambient_color=lighting.ambient,
            diffuse_color=lighting.directional,
            specular_color=torch.zeros_like(lighting.ambient),
            direction=lighting.direction,
        )
        shader = SoftPhongShader(device=dev, cameras=cameras, lights=lights, blend_params=blend)
        fg = shader(fragments, meshes, znear=self.znear, zfar=self.zfar)[..., :3]  # (B, H, W, 3)
        sil = SoftSilhouetteShader(blend_params=blend)(fragments, meshes)[..., 3]  # (B, H, W)
        depth = fragments.zbuf[..., 0].clamp(min=0.0)
        if background is None:
            bg = torch.tensor(self.background_color, dtype=dt, device=dev).view(1, 1, 1, 3)
        else:
            bg = background.to(dt)
        a = sil[..., None]
        return RenderOutput(rgb=a * fg + (1.0 - a) * bg, silhouette=sil, depth=depth)
