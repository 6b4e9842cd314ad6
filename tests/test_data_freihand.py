"""FreiHAND reader, image reading policy and the DataModule, on fixture trees in the published layout."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from data_fixtures import bright_centroid, make_freihand_tree
from handrecon.data import transforms as T
from handrecon.data.datamodule import HandDataModule, split_ids
from handrecon.data.detections import Detections, DetectionsError
from handrecon.data.freihand import (
    DatasetFormatError,
    FreiHANDDataset,
    iter_images,
    load_split_annotations,
)
from handrecon.data.images import BadSampleCounter, CorruptImageError, read_mask, read_rgb
from handrecon.geometry.camera import project_np

CONF = Path(__file__).resolve().parents[1] / "conf" / "data"


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("freihand")
    return make_freihand_tree(root, n=4, versions=4, n_eval=3)


def _reproj(s) -> float:
    return float(np.abs(project_np(s["joints3d"].numpy().astype(np.float64), s["K"].numpy().astype(np.float64)) - s["kp2d"].numpy()).max())


# ---------------------------------------------------------------- annotations


def test_load_split_annotations_reads_shapes_and_infers_versions(tree):
    ann = load_split_annotations(tree["root"], "training")
    assert ann.num_ids == 4 and ann.num_versions == 4 and ann.image_ext == ".jpg"
    np.testing.assert_allclose(ann.K, tree["training"]["K"])
    np.testing.assert_allclose(ann.xyz, tree["training"]["xyz"])
    assert ann.verts.shape == (4, 12, 3) and ann.mano.shape == (4, 61) and ann.scale.shape == (4,)
    ev = load_split_annotations(tree["root"], "evaluation")
    assert ev.num_ids == 3 and ev.num_versions == 1 and ev.xyz.shape == (3, 21, 3)
    names = iter_images(tree["root"], "training")
    assert len(names) == 16 and names[5][0] == "00000005" and names[5][1].name == "00000005.jpg"
    assert all(p.is_file() for _, p in names)


def test_one_version_layout_reads_like_the_synthetic_set(tmp_path):
    make_freihand_tree(tmp_path, n=3, versions=1, n_eval=2, size=64, with_masks=False)
    ds = FreiHANDDataset(tmp_path, "training", image_size=64)
    assert ds.versions == (0,) and len(ds) == 3
    assert all(float(ds[i]["appearance_weight"]) == pytest.approx(1.1) for i in range(3))
    ev = FreiHANDDataset(tmp_path, "evaluation", image_size=64)
    s = ev[1]
    assert bool(s["has_3d"]) and s["verts3d"].shape == (12, 3) and _reproj(s) < 0.02


# ---------------------------------------------------------------- samples


def test_training_sample_contract_and_identity_at_native_size(tree):
    ds = FreiHANDDataset(tree["root"], "training", image_size=224, load_masks=True)
    assert len(ds) == 16
    s = ds[6]  # id 2, version 1
    assert tuple(s) == T.SAMPLE_KEYS
    assert s["image"].shape == (3, 224, 224) and s["image"].dtype == torch.float32
    assert s["name"] == "00000006" and s["index"] == 6
    # no crop at the native size: the image, K and keypoints are exactly the stored ones
    np.testing.assert_array_equal(s["K"].numpy(), tree["training"]["K"][2].astype(np.float32))
    img = read_rgb(tree["root"] / "training" / "rgb" / "00000006.jpg")
    np.testing.assert_array_equal(s["image"].numpy(), img.transpose(2, 0, 1).astype(np.float32) / 255.0)
    np.testing.assert_allclose(s["kp2d"].numpy(), tree["training"]["uv"][2], atol=0.006)
    np.testing.assert_allclose(s["joints3d"].numpy(), tree["training"]["xyz"][2], atol=1e-6)
    np.testing.assert_allclose(s["verts3d"].numpy(), tree["training"]["verts"][2], atol=1e-6)
    assert bool(s["has_3d"]) and bool(s["is_right"]) and s["kp2d_conf"].min() >= 0.5
    # the mask of the original (id 2) serves version 1
    assert bool(s["has_mask"])
    np.testing.assert_array_equal(s["mask"].numpy(), read_mask(tree["root"] / "training" / "mask" / "00000002.jpg"))
    # appearance weight (the reference's): the green-screen original 1.1, background-augmented versions 0.1
    assert float(ds[2]["appearance_weight"]) == pytest.approx(1.1) and float(s["appearance_weight"]) == pytest.approx(0.1)


def test_resize_and_crop_keep_projection_on_keypoints(tree):
    small = FreiHANDDataset(tree["root"], "training", image_size=64)
    s = small[1]
    np.testing.assert_allclose(s["K"][0, 0].item(), tree["training"]["K"][1][0, 0] * 64 / 224, rtol=1e-6)
    assert _reproj(s) < 0.02
    crop = FreiHANDDataset(tree["root"], "training", image_size=64, crop=True, versions=[0, 2])
    assert len(crop) == 8
    for i in range(len(crop)):
        s = crop[i]
        assert _reproj(s) < 0.05
        assert np.linalg.norm(bright_centroid(s["image"].numpy(), 0.5) - s["kp2d"][0].numpy()) < 1.0
        # the crop box is the padded keypoint box: keypoints span about 1/1.3 of the crop
        span = (s["kp2d"].max(0).values - s["kp2d"].min(0).values).max().item()
        assert span == pytest.approx(64 / 1.3, rel=0.02)


def test_augmented_samples_stay_consistent_after_rotation_and_flip(tree):
    aug = T.Augment(scale=(0.8, 1.2), rotation_deg=30, translate_frac=0.05, hflip_prob=0.5)
    ds = FreiHANDDataset(tree["root"], "training", image_size=64, augment=aug)
    torch.manual_seed(0)
    sides = set()
    for i in range(len(ds)):
        s = ds[i]
        sides.add(bool(s["is_right"]))
        assert _reproj(s) < 0.05, s["name"]
        assert np.linalg.norm(bright_centroid(s["image"].numpy(), 0.5) - s["kp2d"][0].numpy()) < 1.0
    assert sides == {True, False}


def test_evaluation_without_released_gt_has_no_3d(tmp_path):
    make_freihand_tree(tmp_path, n=2, versions=1, with_eval_gt=False, n_eval=3, size=64, eval_detections=False)
    ds = FreiHANDDataset(tmp_path, "evaluation", image_size=64)
    s = ds[0]
    assert not bool(s["has_3d"]) and float(s["joints3d"].abs().sum()) == 0
    assert s["verts3d"].shape == (1, 3) and float(s["kp2d_conf"].sum()) == 0
    with pytest.raises(DatasetFormatError, match="evaluation_xyz.json"):
        FreiHANDDataset(tmp_path, "evaluation", image_size=64, require_3d=True)


# ---------------------------------------------------------------- bad inputs


def test_missing_root_and_missing_json_name_the_path(tmp_path):
    with pytest.raises(DatasetFormatError, match="root folder not found: .*nowhere"):
        FreiHANDDataset(tmp_path / "nowhere")
    (tmp_path / "training" / "rgb").mkdir(parents=True)
    with pytest.raises(DatasetFormatError, match=r"training_K\.json not found"):
        load_split_annotations(tmp_path, "training")
    with pytest.raises(DatasetFormatError, match="split must be one of"):
        load_split_annotations(tmp_path, "train")


def test_image_count_mismatch_and_missing_image(tmp_path):
    make_freihand_tree(tmp_path, n=3, versions=4, n_eval=1, size=32, with_masks=False)
    rgb = tmp_path / "training" / "rgb"
    (rgb / "00000004.jpg").rename(tmp_path / "moved.jpg")
    with pytest.raises(DatasetFormatError, match=r"holds 11 \.jpg images but .*training_K\.json has 3 samples"):
        load_split_annotations(tmp_path, "training")
    (tmp_path / "moved.jpg").rename(rgb / "00000015.jpg")  # right count, wrong numbering
    with pytest.raises(DatasetFormatError, match=r"00000004\.jpg is missing"):
        load_split_annotations(tmp_path, "training")


def test_annotation_shape_mismatch_names_the_file(tmp_path):
    make_freihand_tree(tmp_path, n=3, versions=1, n_eval=1, size=32, with_masks=False)
    xyz = json.loads((tmp_path / "training_xyz.json").read_text())
    (tmp_path / "training_xyz.json").write_text(json.dumps(xyz[:2]))
    with pytest.raises(DatasetFormatError, match=r"training_xyz\.json: 2 entries but .*has 3"):
        load_split_annotations(tmp_path, "training")
    (tmp_path / "training_xyz.json").write_text(json.dumps([[[0, 0]] * 21] * 3))
    with pytest.raises(DatasetFormatError, match=r"training_xyz\.json.*expected \(3, 21, 3\)"):
        load_split_annotations(tmp_path, "training")


def test_training_requires_detections_and_says_how_to_make_them(tmp_path):
    make_freihand_tree(tmp_path, n=2, versions=1, n_eval=1, size=32, detections=None, with_masks=False)
    with pytest.raises(DatasetFormatError, match=r"detections/training\.json does not exist.*python -m handrecon\.detect"):
        FreiHANDDataset(tmp_path, "training")


def test_detections_for_another_split_or_wrong_shape_are_rejected(tmp_path, tree):
    other = tmp_path / "eval_dets.json"
    Detections.load(tree["root"] / "detections" / "evaluation.json").save(other)
    with pytest.raises(DetectionsError, match=r"eval_dets\.json holds detections for split 'evaluation'.*'training'"):
        FreiHANDDataset(tree["root"], "training", detections=other)
    doc = json.loads((tree["root"] / "detections" / "training.json").read_text())
    doc["items"]["00000001"]["xy"] = [[0.0, 0.0, 0.0]] * 21
    bad = tmp_path / "bad_shape.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(DetectionsError, match=r"bad_shape\.json: item '00000001' has xy \(21, 3\).*expected \(21, 2\)"):
        FreiHANDDataset(tree["root"], "training", detections=bad)


def test_detections_of_originals_serve_all_versions_and_missing_ones_are_listed(tmp_path):
    truth = make_freihand_tree(tmp_path, n=3, versions=4, n_eval=1, size=32, detections="originals", with_masks=False)
    ds = FreiHANDDataset(tmp_path, "training", image_size=32)
    np.testing.assert_allclose(ds[4]["kp2d"].numpy(), truth["training"]["uv"][1], atol=0.006)
    det = Detections.load(tmp_path / "detections" / "training.json")
    part = Detections(det.names[:2], det.xy[:2], det.conf[:2], split="training")
    part.save(tmp_path / "partial.json")
    with pytest.raises(DatasetFormatError, match=r"4 of 12 images have no detection in .*partial\.json.*'00000002'"):
        FreiHANDDataset(tmp_path, "training", detections=tmp_path / "partial.json")


def test_versions_out_of_range(tree):
    with pytest.raises(DatasetFormatError, match=r"versions \[0, 4\] requested but .*holds 4 version"):
        FreiHANDDataset(tree["root"], "training", versions=[0, 4])


# ---------------------------------------------------------------- corrupt images


def test_read_rgb_rejects_truncated_garbage_and_missing_files(tmp_path, tree):
    good = (tree["root"] / "training" / "rgb" / "00000000.jpg").read_bytes()
    trunc = tmp_path / "trunc.jpg"
    trunc.write_bytes(good[: len(good) * 2 // 3])
    with pytest.raises(CorruptImageError, match=r"trunc\.jpg: truncated JPEG"):
        read_rgb(trunc)
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not an image at all" * 20)
    with pytest.raises(CorruptImageError, match=r"junk\.jpg: OpenCV could not decode"):
        read_rgb(junk)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(CorruptImageError, match="empty"):
        read_rgb(tmp_path / "empty.png")
    with pytest.raises(CorruptImageError, match=r"absent\.jpg: file not found"):
        read_rgb(tmp_path / "absent.jpg")
    img = read_rgb(tree["root"] / "training" / "rgb" / "00000000.jpg")
    assert img.dtype == np.uint8 and img.shape == (224, 224, 3)


def test_corrupt_image_is_logged_counted_and_substituted_then_fails_above_fraction(tmp_path, caplog):
    make_freihand_tree(tmp_path, n=5, versions=4, n_eval=1, size=32, with_masks=False)
    bad = tmp_path / "training" / "rgb" / "00000001.jpg"
    bad.write_bytes(bad.read_bytes()[:300])
    ds = FreiHANDDataset(tmp_path, "training", image_size=32, max_bad_fraction=0.2)  # 20 files: 4 allowed
    with caplog.at_level(logging.WARNING):
        s = ds[1]
    assert s["name"] == "00000002"  # the next sample stands in
    assert ds.bad_files.count == 1 and str(bad) in ds.bad_files.bad
    assert any(str(bad) in r.getMessage() and "truncated JPEG" in r.getMessage() for r in caplog.records)
    strict = FreiHANDDataset(tmp_path, "training", image_size=32, max_bad_fraction=0.01)
    with pytest.raises(RuntimeError, match=r"1 bad image files out of 20 exceed max_bad_fraction=0\.01.*00000001\.jpg"):
        strict[1]


def test_bad_sample_counter_allowance():
    c = BadSampleCounter(total=250, max_bad_fraction=0.01, what="x")
    assert c.allowed == 2
    c.record("a", "r")
    c.record("a", "r")  # the same file counts once
    c.record("b", "r")
    assert c.count == 2
    with pytest.raises(RuntimeError, match=r"3 bad image files out of 250.*c \(why\)"):
        c.record("c", "why")
    with pytest.raises(ValueError, match="max_bad_fraction"):
        BadSampleCounter(10, 1.5)


# ---------------------------------------------------------------- DataModule


def test_split_ids_properties():
    tr, va = split_ids(100, 0.1, seed=3)
    assert len(va) == 10 and len(tr) == 90 and not set(tr) & set(va)
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(100))
    tr2, va2 = split_ids(100, 0.1, seed=3)
    np.testing.assert_array_equal(va, va2)
    assert not np.array_equal(va, split_ids(100, 0.1, seed=4)[1])
    assert len(split_ids(10, 0.0)[1]) == 0 and len(split_ids(10, 0.01)[1]) == 1
    groups = np.repeat(np.array(["a", "b", "c", "d"]), 5)
    tr, va = split_ids(20, 0.25, seed=0, groups=groups)
    assert not set(groups[tr]) & set(groups[va]) and len(va) == 5
    with pytest.raises(ValueError, match="val_fraction"):
        split_ids(10, 1.0)


def _freihand_cfg(root, **over):
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(CONF / "freihand.yaml")
    cfg.root = str(root)
    for k, v in over.items():
        OmegaConf.update(cfg, k, v)
    return cfg


def test_datamodule_from_hydra_config_holds_out_ids_across_versions(tree):
    from hydra.utils import instantiate

    cfg = _freihand_cfg(tree["root"], batch_size=4, num_workers=0, image_size=64, val_fraction=0.25)
    dm = instantiate(cfg)
    assert isinstance(dm, HandDataModule)
    dm.setup("fit")
    train_ids = {int(n) % 4 for n in (dm.train_set[i]["name"] for i in range(len(dm.train_set)))}
    val_names = [dm.val_set[i]["name"] for i in range(len(dm.val_set))]
    assert len(dm.train_set) == 12 and len(val_names) == 1  # 3 ids x 4 versions / 1 id x originals
    assert int(val_names[0]) < 4 and int(val_names[0]) not in train_ids
    assert dm.train_set.augment is not None and dm.val_set.augment is None
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, 64, 64) and batch["K"].shape == (4, 3, 3)
    assert batch["kp2d"].shape == (4, 21, 2) and batch["verts3d"].shape == (4, 12, 3)
    assert batch["has_3d"].dtype == torch.bool and len(batch["name"]) == 4
    vb = next(iter(dm.val_dataloader()))
    assert vb["image"].shape[0] == 1
    dm.setup("test")
    tb = next(iter(dm.test_dataloader()))
    assert tb["image"].shape == (3, 3, 64, 64) and bool(tb["has_3d"].all())
    d = dm.describe()
    assert d["train"]["samples"] == 12 and d["val"]["versions"] == [0] and d["root"] == str(tree["root"])


def test_datamodule_refuses_a_train_set_smaller_than_the_batch(tree):
    dm = HandDataModule(lambda: FreiHANDDataset(tree["root"], "training", image_size=32, versions=[0]), batch_size=8, num_workers=0)
    with pytest.raises(ValueError, match="fewer than batch_size=8"):
        dm.setup("fit")


def test_freihand_config_requires_root(tmp_path):
    """data.root comes from paths.freihand_root (conf/local/default.yaml or the command line); unset,
    the error names both keys."""
    from omegaconf.errors import InterpolationToMissingValueError

    from handrecon.cli import compose_config

    cfg = compose_config(["data=freihand"], tmp_path)
    with pytest.raises(InterpolationToMissingValueError, match=r"(?s)paths.freihand_root.*data.train_dataset.root"):
        _ = cfg.data.train_dataset.root
    cfg = compose_config(["data=freihand", "paths.freihand_root=/data/FreiHAND_pub_v2"], tmp_path)
    assert cfg.data.root == cfg.data.train_dataset.root == "/data/FreiHAND_pub_v2"
    assert cfg.data.train_dataset.detections == "/data/FreiHAND_pub_v2/detections/training.json"


def test_worker_processes_load_samples_and_report_bad_files(tmp_path):
    make_freihand_tree(tmp_path, n=4, versions=1, n_eval=1, size=32, with_masks=False)
    ds = FreiHANDDataset(tmp_path, "training", image_size=32, augment=T.Augment())
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2)
    names = [n for b in loader for n in b["name"]]
    assert sorted(names) == [f"{i:08d}" for i in range(4)]
    bad = tmp_path / "training" / "rgb" / "00000003.jpg"
    bad.write_bytes(b"\xff\xd8 broken")
    strict = torch.utils.data.DataLoader(FreiHANDDataset(tmp_path, "training", image_size=32), batch_size=2, num_workers=1)
    with pytest.raises(RuntimeError, match=r"1 bad image files out of 4.*00000003\.jpg \(truncated JPEG"):
        list(strict)
