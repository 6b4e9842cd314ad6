"""A picture of the open hand model rendered by handrecon's own renderer in random natural poses.

    python -m handrecon.render.gallery --out docs/render_grid.png --n 20 --size 128 --seed 0
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch

from handrecon.data.synth import frame_hand, make_K
from handrecon.geometry.rotation import axis_angle_to_matrix
from handrecon.models.anatomy import sample_natural_pose
from handrecon.models.hand_model import HandModel
from handrecon.render import Lighting, SoftRasterizer


def render_poses(n: int = 20, size: int = 128, seed: int = 0, renderer=None):
    """-> (rgb (n, size, size, 3) float, silhouette (n, size, size)) of the open hand in natural poses,
    seen from random views, lit from near the camera, skin-coloured."""
    g = torch.Generator().manual_seed(seed)
    model = HandModel(use_pca=False, flat_hand_mean=True)  # absolute axis-angle finger poses
    pose = sample_natural_pose(n, model.joint_frames, generator=g).reshape(n, 45)
    out = model(pose, torch.zeros(n, model.num_betas))
    # views: palm/back/side, fingers roughly up, random roll
    axis = torch.randn(n, 3, generator=g)
    axis = axis / axis.norm(dim=-1, keepdim=True)
    R = axis_angle_to_matrix(axis * (torch.rand(n, 1, generator=g) * math.pi))
    verts = out.verts @ R.transpose(1, 2)
    K = torch.from_numpy(make_K(2.6 * size, (size - 1) / 2, (size - 1) / 2)).float()
    placed = []
    for i in range(n):
        T = frame_hand(verts[i].numpy().astype(np.float64), K.numpy().astype(np.float64), 0.85,
                       np.array([(size - 1) / 2, (size - 1) / 2]), size)
        placed.append(verts[i] + torch.from_numpy(T).float())
    verts = torch.stack(placed)
    colors = torch.tensor([0.80, 0.60, 0.52]).expand(n, model.num_verts, 3)
    light = Lighting(ambient=torch.full((n, 3), 0.45), directional=torch.full((n, 3), 0.65),
                     direction=torch.tensor([-0.3, -0.4, -1.0]).expand(n, 3))
    renderer = renderer or SoftRasterizer(background_color=(1.0, 1.0, 1.0))
    with torch.no_grad():
        r = renderer(verts, model.faces, colors, K.expand(n, 3, 3), size, light)
    return r.rgb.numpy(), r.silhouette.numpy()


def grid(images: np.ndarray, cols: int = 5) -> np.ndarray:
    n, h, w, _ = images.shape
    rows = math.ceil(n / cols)
    canvas = np.ones((rows * h, cols * w, 3), np.float32)
    for i, im in enumerate(images):
        canvas[(i // cols) * h : (i // cols + 1) * h, (i % cols) * w : (i % cols + 1) * w] = im
    return (np.clip(canvas, 0, 1) * 255).round().astype(np.uint8)


def main(argv=None) -> None:
    import cv2

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/render_grid.png")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    rgb, _ = render_poses(a.n, a.size, a.seed)
    cv2.imwrite(a.out, grid(rgb)[..., ::-1])
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
