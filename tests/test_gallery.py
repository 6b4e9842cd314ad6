"""The README's render grid: the open hand, posed naturally, rendered by handrecon's renderer."""

import numpy as np

from handrecon.render.gallery import grid, render_poses


def test_hand_is_framed_and_shaded():
    rgb, sil = render_poses(n=3, size=64, seed=1)
    assert rgb.shape == (3, 64, 64, 3) and sil.shape == (3, 64, 64)
    cover = (sil > 0.5).mean(axis=(1, 2))
    assert ((cover > 0.05) & (cover < 0.9)).all(), cover  # framed: neither empty nor filling the image
    inside = rgb[sil > 0.5]
    assert inside.std(0).max() > 0.02  # shaded, not a flat silhouette
    assert np.allclose(rgb[sil < 1e-4], 1.0, atol=1e-3)  # white background
    assert grid(rgb, cols=2).shape == (128, 128, 3)
