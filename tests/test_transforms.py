"""Crop / augmentation transforms: exactness of 2D-3D consistency, image warps, colour jitter."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from data_fixtures import bright_centroid, draw_disc, random_hand
from handrecon.data import transforms as T
from handrecon.geometry import camera

W, H = 96, 80


def _raw(seed: int = 0, size: int = 64, crop_from_box: bool = True) -> dict:
    rng = np.random.default_rng(seed)
    K = np.array([[110.0, 0, W / 2 + 1.3], [0, 112.0, H / 2 - 0.7], [0, 0, 1]])
    joints = random_hand(rng, K, W, H, spread=0.03)
    uv = camera.project_np(joints, K)
    img = np.full((H, W, 3), 20, np.uint8)
    draw_disc(img, uv[0], radius=2.5)
    center, side = camera.square_box_from_points(uv, pad=1.6)
    crop = T.box_affine(center, side, size) if crop_from_box else T.full_image_affine(W, H, size)
    return {
        "image": img, "K": K, "kp2d": uv, "kp2d_conf": rng.uniform(0.5, 1, 21), "joints3d": joints,
        "verts3d": joints[:5] + 0.01, "mask": None, "is_right": True, "crop": crop, "center": np.array(center),
    }  # fmt: skip


def _reproj_err(out: dict) -> float:
    return float(np.abs(camera.project_np(out["joints3d"], out["K"]) - out["kp2d"]).max())


def test_crop_and_resize_updates_K_points_and_pixels_consistently():
    raw = _raw()
    center, side = (raw["kp2d"][0] + [3.0, -2.0]), 30.0
    img, K2, kp2 = T.crop_and_resize(raw["image"], raw["K"], raw["kp2d"], center, side, 64)
    A = camera.crop_matrix(tuple(center), side, 64)
    assert img.shape == (64, 64, 3)
    np.testing.assert_allclose(K2, A @ raw["K"])
    # a projected 3D joint lands on its keypoint in the crop
    assert np.abs(camera.project_np(raw["joints3d"], K2) - kp2).max() < 1e-6
    # the pixels moved with the keypoints: the disc is where the wrist keypoint went (scale 64/30)
    assert np.linalg.norm(bright_centroid(img / 255.0, 0.3) - kp2[0]) < 1.0
    # zoom: distances between keypoints scale by out / side
    d0 = np.linalg.norm(raw["kp2d"][1] - raw["kp2d"][2])
    assert np.linalg.norm(kp2[1] - kp2[2]) == pytest.approx(d0 * 64 / 30.0, rel=1e-9)


def test_full_image_affine_is_identity_at_same_size_and_letterboxes_otherwise():
    np.testing.assert_allclose(T.full_image_affine(224, 224, 224), np.eye(3), atol=1e-12)
    A = T.full_image_affine(W, H, 48)  # 96 x 80 -> 48: scale 0.5 by the longer side
    p = camera.apply_homography(A, np.array([[-0.5, (H - 1) / 2], [W - 0.5, (H - 1) / 2], [(W - 1) / 2, -0.5]]))
    np.testing.assert_allclose(p[0], [-0.5, 23.5], atol=1e-9)  # left edge -> left edge, centred vertically
    np.testing.assert_allclose(p[1], [47.5, 23.5], atol=1e-9)  # right edge -> right edge
    assert p[2, 1] == pytest.approx(23.5 - 20.0)  # top edge 80/2 * 0.5 above the centre (letterbox)


def test_no_augmentation_with_identity_crop_returns_the_input_exactly():
    raw = _raw(crop_from_box=False)
    raw["image"] = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    raw["crop"] = T.full_image_affine(64, 64, 64)
    raw["center"] = np.array([31.5, 31.5])
    out = T.apply(raw, out_size=64)
    np.testing.assert_array_equal(out["image"], raw["image"].astype(np.float32) / 255.0)
    np.testing.assert_allclose(out["K"], raw["K"])
    np.testing.assert_allclose(out["kp2d"], raw["kp2d"])
    np.testing.assert_allclose(out["joints3d"], raw["joints3d"])


@pytest.mark.parametrize("angle_deg", [-25.0, 10.0, 40.0])
def test_rotation_is_exact_under_perspective(angle_deg):
    raw = _raw(seed=2)
    base = T.apply(raw, out_size=64)
    out = T.apply(raw, out_size=64, params=T.AugParams(angle=math.radians(angle_deg)))
    assert _reproj_err(out) < 1e-6
    # 3D moved by a rotation about the optical axis: depth and distances unchanged
    np.testing.assert_allclose(out["joints3d"][:, 2], raw["joints3d"][:, 2], atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(out["joints3d"], axis=1), np.linalg.norm(raw["joints3d"], axis=1))
    assert not np.allclose(out["joints3d"], raw["joints3d"])
    # the focal lengths are those of the unrotated crop (K changes only by the recentring shift)
    np.testing.assert_allclose(np.diag(out["K"])[:2], np.diag(base["K"])[:2])
    # the crop stays on the hand: the box centre maps to the same crop pixel as without rotation
    M, _, _ = T.view_transform(raw["K"], raw["crop"], raw["center"], 64, T.AugParams(angle=math.radians(angle_deg)))
    np.testing.assert_allclose(camera.apply_homography(M, raw["center"][None]), camera.apply_homography(raw["crop"], raw["center"][None]), atol=1e-9)
    # the image rotated with the keypoints
    assert np.linalg.norm(bright_centroid(out["image"], 0.3) - out["kp2d"][0]) < 1.0


def test_flip_mirrors_3d_toggles_hand_side_and_keeps_projection_exact():
    raw = _raw(seed=3)
    base = T.apply(raw, out_size=64)
    out = T.apply(raw, out_size=64, params=T.AugParams(flip=True))
    assert out["is_right"] is False and base["is_right"] is True
    np.testing.assert_allclose(out["joints3d"], raw["joints3d"] * [-1, 1, 1])
    np.testing.assert_allclose(out["verts3d"], raw["verts3d"] * [-1, 1, 1])
    np.testing.assert_allclose(out["kp2d"][:, 0], 63 - base["kp2d"][:, 0], atol=1e-9)
    np.testing.assert_allclose(out["kp2d"][:, 1], base["kp2d"][:, 1], atol=1e-9)
    np.testing.assert_allclose(out["K"], camera.mirror_K(base["K"], 64))
    assert _reproj_err(out) < 1e-6
    np.testing.assert_allclose(out["image"], base["image"][:, ::-1], atol=1e-6)
    # flipping a left hand gives a right hand back
    raw["is_right"] = False
    assert T.apply(raw, out_size=64, params=T.AugParams(flip=True))["is_right"] is True


def test_zoom_and_shift_move_keypoints_as_specified():
    raw = _raw(seed=4)
    base = T.apply(raw, out_size=64)
    out = T.apply(raw, out_size=64, params=T.AugParams(scale=1.25, shift=(0.1, -0.05)))
    c = (64 - 1) / 2
    expected = (base["kp2d"] - c) * 1.25 + c - np.array([0.1, -0.05]) * 64
    np.testing.assert_allclose(out["kp2d"], expected, atol=1e-9)
    assert _reproj_err(out) < 1e-6


def test_random_augmentations_keep_2d_3d_and_image_consistent():
    raw = _raw(seed=5)
    raw["mask"] = np.zeros((H, W), np.float32)
    draw_disc(raw["mask"][..., None], raw["kp2d"][0], radius=3, value=1)
    aug = T.Augment(scale=(0.8, 1.2), rotation_deg=30, translate_frac=0.1, brightness=0.0, contrast=0.0,
                    saturation=0.0, hue=0.0, hflip_prob=0.5)
    rng = np.random.default_rng(0)
    flips = 0
    for _ in range(12):
        out = T.apply(raw, rng, aug, out_size=64)
        flips += out["params"].flip
        assert _reproj_err(out) < 1e-5
        assert np.linalg.norm(bright_centroid(out["image"], 0.3) - out["kp2d"][0]) < 1.0
        assert np.linalg.norm(bright_centroid(out["mask"], 0.3) - out["kp2d"][0]) < 1.0
        assert out["is_right"] is (not out["params"].flip)
    assert 0 < flips < 12


def test_sample_params_within_ranges_and_reproducible():
    aug = T.Augment(scale=(0.9, 1.1), rotation_deg=15, translate_frac=0.05, hflip_prob=0.0)
    draws = [T.sample_params(aug, np.random.default_rng(7)) for _ in range(2)]
    assert draws[0] == draws[1]
    rng = np.random.default_rng(0)
    for _ in range(200):
        p = T.sample_params(aug, rng)
        assert 0.9 <= p.scale <= 1.1 and abs(p.angle) <= math.radians(15) + 1e-12
        assert max(abs(p.shift[0]), abs(p.shift[1])) <= 0.05 and not p.flip
        assert 0.8 <= p.brightness <= 1.2 and abs(p.hue) <= 0.02
    with pytest.raises(ValueError, match="rng"):
        T.apply(_raw(), None, aug, out_size=64)


def test_color_jitter_properties():
    rng = np.random.default_rng(0)
    img = rng.uniform(0.2, 0.6, size=(8, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(T.color_jitter(img, T.AugParams()), img)
    np.testing.assert_allclose(T.color_jitter(img, T.AugParams(brightness=1.2)), img * 1.2, rtol=1e-6)
    grey = T.color_jitter(img, T.AugParams(saturation=0.0))
    np.testing.assert_allclose(grey[..., 0], grey[..., 1], atol=1e-6)
    low = T.color_jitter(img, T.AugParams(contrast=0.5))
    assert low.std() == pytest.approx(img.std() * 0.5, rel=0.05)
    # a hue shift leaves grey pixels grey and keeps each pixel's max channel (HSV value)
    g = np.full((2, 2, 3), 0.4, np.float32)
    np.testing.assert_allclose(T.color_jitter(g, T.AugParams(hue=0.1)), g, atol=1e-5)
    h = T.color_jitter(img, T.AugParams(hue=0.25))
    np.testing.assert_allclose(h.max(-1), img.max(-1), atol=1e-5)
    assert not np.allclose(h, img)
    out = T.color_jitter(img, T.AugParams(brightness=3.0))
    assert out.max() <= 1.0 and out.min() >= 0.0


def test_augment_config_validation():
    assert T.Augment.from_any({"scale": [0.8, 1.2], "hflip_prob": 0.5}).scale == (0.8, 1.2)
    assert T.Augment.from_any(None) is None
    with pytest.raises(ValueError, match="scale"):
        T.Augment(scale=(1.2, 0.8))
    with pytest.raises(ValueError, match="hflip_prob"):
        T.Augment(hflip_prob=1.5)
    with pytest.raises(ValueError, match="rotation_deg"):
        T.Augment(rotation_deg=-1)
    with pytest.raises(ValueError, match="unknown augmentation option"):
        T.Augment.from_any({"rotation": 10})
    with pytest.raises(ValueError, match="positive"):
        T.box_affine((10, 10), 0.0, 64)


def test_to_model_sample_contract():
    out = T.apply(_raw(), out_size=64)
    s = T.to_model_sample(out, has_3d=True, name="x", index=3, appearance_weight=0.5)
    assert tuple(s) == T.SAMPLE_KEYS
    assert s["image"].shape == (3, 64, 64) and s["image"].dtype.is_floating_point
    assert float(s["image"].min()) >= 0 and float(s["image"].max()) <= 1
    assert s["mask"].shape == (64, 64) and not bool(s["has_mask"]) and float(s["mask"].abs().sum()) == 0
    assert bool(s["has_3d"]) and bool(s["is_right"]) and float(s["appearance_weight"]) == 0.5
    assert s["kp2d"].shape == (21, 2) and s["kp2d_conf"].shape == (21,) and s["joints3d"].shape == (21, 3)


def test_default_augmentation_is_the_references_uniform_rotation_only():
    rng = np.random.default_rng(0)
    draws = [T.sample_params(T.Augment(), rng) for _ in range(2000)]
    angles = np.array([p.angle for p in draws])
    assert angles.min() >= -np.pi and angles.max() <= np.pi
    assert angles.min() < -0.95 * np.pi and angles.max() > 0.95 * np.pi  # the full +-180 deg
    assert abs(angles.mean()) < 0.1 and abs(angles.std() - np.pi / np.sqrt(3)) < 0.05  # uniform
    ident = T.AugParams()
    for p in draws:
        assert (p.scale, p.shift, p.flip, p.brightness, p.contrast, p.saturation, p.hue) == (
            ident.scale, ident.shift, ident.flip, ident.brightness, ident.contrast, ident.saturation, ident.hue)


@pytest.mark.parametrize("name,rotation", [("freihand", 180.0), ("synthetic", 180.0), ("ho3d", 0.0)])
def test_data_configs_use_the_references_augmentation(name, rotation):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "data" / f"{name}.yaml")
    aug = instantiate(cfg.train_dataset.augment)
    assert aug.rotation_deg == rotation
    assert (aug.brightness, aug.contrast, aug.saturation, aug.hue, aug.hflip_prob) == (0.0,) * 5
    if name == "ho3d":  # the reference's HO3D crop jitter: scale x U(0.8, 0.9) about its mean, centre ~5 px
        assert aug.scale == pytest.approx((0.8 / 0.85, 0.9 / 0.85), abs=0.002) and 0 < aug.translate_frac < 0.03
    else:
        assert aug.scale == (1.0, 1.0) and aug.translate_frac == 0.0
