"""HO3D reader on fixture trees in the published v2 / v3 layouts."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from data_fixtures import bright_centroid, make_ho3d_tree
from handrecon.data import transforms as T
from handrecon.data.detections import Detections, DetectionsError
from handrecon.data.ho3d import (
    DatasetFormatError,
    HO3DDataset,
    canonical_to_ho3d_joints,
    ho3d_joints_to_canonical,
    iter_images,
    read_meta,
)
from handrecon.geometry.camera import project_np
from handrecon.joints import JOINT_NAMES

CONF = Path(__file__).resolve().parents[1] / "conf" / "data"


@pytest.fixture(scope="module")
def v2(tmp_path_factory):
    root = tmp_path_factory.mktemp("ho3d_v2")
    return root, make_ho3d_tree(root, version="v2")


def _reproj(s) -> float:
    return float(np.abs(project_np(s["joints3d"].numpy().astype(np.float64), s["K"].numpy().astype(np.float64)) - s["kp2d"].numpy()).max())


# ---------------------------------------------------------------- the conversion


def test_joint_order_and_axes_conversion():
    ho3d = np.zeros((21, 3))
    ho3d[:, 2] = -0.5  # OpenGL: in front of the camera means z < 0
    ho3d[16] = [0.01, 0.02, -0.6]  # HO3D index 16 = thumb tip (first of the appended tips)
    ho3d[0] = [0.03, -0.04, -0.55]  # wrist
    can = ho3d_joints_to_canonical(ho3d)
    assert JOINT_NAMES[4] == "thumb_tip"
    np.testing.assert_allclose(can[4], [0.01, -0.02, 0.6])  # y and z flipped
    np.testing.assert_allclose(can[0], [0.03, 0.04, 0.55])
    assert (can[:, 2] > 0).all()
    np.testing.assert_allclose(canonical_to_ho3d_joints(can), ho3d)
    # HO3D index 13 is MANO's thumb1 -> canonical 1 (thumb_mcp); 1 is index1 -> canonical 5
    marker = np.zeros((2, 21, 3))
    marker[:, 13] = 1.0
    marker[:, 1] = 2.0
    out = ho3d_joints_to_canonical(marker)
    assert out.shape == (2, 21, 3) and out[0, 1, 0] == 1.0 and out[1, 5, 0] == 2.0
    with pytest.raises(ValueError, match=r"\(\.\.\., 21, 3\)"):
        ho3d_joints_to_canonical(np.zeros((16, 3)))


# ---------------------------------------------------------------- samples


@pytest.mark.parametrize("version", ["v2", "v3"])
def test_train_samples_match_ground_truth_and_stay_consistent(tmp_path, version):
    truth = make_ho3d_tree(tmp_path, version=version, sequences=("ABF10", "MC1"), frames=2)
    ext = {"v2": ".png", "v3": ".jpg"}[version]
    assert (tmp_path / "train" / "ABF10" / "rgb" / f"0000{ext}").is_file()
    ds = HO3DDataset(tmp_path, "train", version=version, image_size=64)
    assert len(ds) == 4 and ds.image_ext == ext
    for i in range(len(ds)):
        s = ds[i]
        assert tuple(s) == T.SAMPLE_KEYS
        gt = truth["train"][s["name"]]
        assert s["index"] == i and s["image"].shape == (3, 64, 64)
        np.testing.assert_allclose(s["joints3d"].numpy(), gt["joints"], atol=1e-6)  # canonical order, OpenCV
        assert (s["joints3d"][:, 2] > 0).all() and bool(s["has_3d"]) and bool(s["is_right"])
        assert s["verts3d"].shape == (1, 3) and not bool(s["has_mask"])
        assert _reproj(s) < 0.05
        # the crop was applied: K changed from the 640x480 camera, the disc follows the wrist keypoint
        assert s["K"][0, 0].item() < gt["K"][0, 0] * 0.9
        assert np.linalg.norm(bright_centroid(s["image"].numpy(), 0.5) - s["kp2d"][0].numpy()) < 1.0
        span = (s["kp2d"].max(0).values - s["kp2d"].min(0).values).max().item()
        assert span == pytest.approx(64 / 1.5, rel=0.02)


def test_augmented_flip_and_rotation(v2):
    root, _ = v2
    ds = HO3DDataset(root, "train", image_size=64, augment=T.Augment(rotation_deg=30, hflip_prob=0.5))
    torch.manual_seed(1)
    sides = set()
    for _ in range(2):
        for i in range(len(ds)):
            s = ds[i]
            sides.add(bool(s["is_right"]))
            assert _reproj(s) < 0.05
            assert np.linalg.norm(bright_centroid(s["image"].numpy(), 0.5) - s["kp2d"][0].numpy()) < 1.0
    assert sides == {True, False}


def test_evaluation_crop_comes_from_the_hand_bounding_box(v2):
    root, truth = v2
    ds = HO3DDataset(root, "evaluation", image_size=64)  # no evaluation detections: optional
    for i in range(len(ds)):
        s = ds[i]
        gt = truth["evaluation"][s["name"]]
        assert not bool(s["has_3d"]) and float(s["joints3d"].abs().sum()) == 0 and float(s["kp2d_conf"].sum()) == 0
        uv = project_np(gt["joints"], s["K"].numpy().astype(np.float64))  # hidden GT, projected with the crop K
        lo, hi = uv.min(0), uv.max(0)
        assert (hi - lo).max() == pytest.approx(64 / 1.5, rel=0.02)  # the box (1.5 x padded) fills the crop
        np.testing.assert_allclose((lo + hi) / 2, [31.5, 31.5], atol=1.0)
        assert np.linalg.norm(bright_centroid(s["image"].numpy(), 0.5) - uv[0]) < 1.0


def test_meta_with_none_objects_and_latin1_pickles(v2):
    root, _ = v2
    meta = read_meta(root / "train" / "ABF10" / "meta" / "0000.pkl")
    assert meta["objRot"] is None and meta["handJoints3D"].shape == (21, 3)
    assert iter_images(root, "train")[0][0] == "ABF10/0000"


def test_datamodule_from_config_splits_by_sequence(v2):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    root, _ = v2
    cfg = OmegaConf.load(CONF / "ho3d.yaml")
    cfg.root = str(root)
    cfg.batch_size, cfg.num_workers, cfg.image_size, cfg.val_fraction = 2, 0, 32, 0.3
    dm = instantiate(cfg)
    dm.setup("fit")
    train_seqs = {dm.train_set[i]["name"].split("/")[0] for i in range(len(dm.train_set))}
    val_seqs = {dm.val_set[i]["name"].split("/")[0] for i in range(len(dm.val_set))}
    assert len(val_seqs) == 1 and not train_seqs & val_seqs and len(train_seqs) == 2
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 32, 32) and batch["joints3d"].shape == (2, 21, 3)
    dm.setup("test")
    tb = next(iter(dm.test_dataloader()))
    assert tb["image"].shape == (2, 3, 32, 32) and not bool(tb["has_3d"].any())
    assert dm.describe()["version"] == "v2"


# ---------------------------------------------------------------- bad inputs


def test_missing_root_list_sequence_and_detections(tmp_path):
    with pytest.raises(DatasetFormatError, match="HO3D root folder not found: .*nowhere"):
        HO3DDataset(tmp_path / "nowhere")
    make_ho3d_tree(tmp_path, sequences=("ABF10",), frames=1, eval_sequences=("SM1",), eval_frames=1, detections=False)
    with pytest.raises(DatasetFormatError, match=r"detections/train\.json does not exist.*python -m handrecon\.detect") as e:
        HO3DDataset(tmp_path, "train")
    # the real values, not <root> / <v2|v3> placeholders, and the config keys that set the file
    msg = str(e.value)
    assert f"--images {tmp_path} --dataset ho3d --ho3d-version v2 --split train" in msg
    assert f"--out {tmp_path / 'detections' / 'train.json'}" in msg and "<root>" not in msg and "<v2|v3>" not in msg
    for key in ("data.detections_dir", "data.train_dataset.detections", "data.val_dataset.detections"):
        assert key in msg, key
    (tmp_path / "evaluation.txt").rename(tmp_path / "moved.txt")
    with pytest.raises(DatasetFormatError, match=r"evaluation\.txt not found"):
        HO3DDataset(tmp_path, "evaluation")
    (tmp_path / "evaluation.txt").write_text("SM1/0000\nXX9/0000\n")
    with pytest.raises(DatasetFormatError, match=r"evaluation/XX9/rgb not found.*'XX9'"):
        HO3DDataset(tmp_path, "evaluation")
    (tmp_path / "evaluation.txt").write_text("SM1-0000\n")
    with pytest.raises(DatasetFormatError, match="'<sequence>/<frame>'"):
        HO3DDataset(tmp_path, "evaluation")


def test_missing_meta_and_wrong_fields_name_the_file(tmp_path):
    make_ho3d_tree(tmp_path, sequences=("ABF10",), frames=2, eval_sequences=("SM1",), eval_frames=1)
    meta = tmp_path / "train" / "ABF10" / "meta" / "0001.pkl"
    data = pickle.loads(meta.read_bytes())
    meta.unlink()
    # found when the dataset is built, not mid-epoch
    with pytest.raises(DatasetFormatError, match=r"1 of 2 frames listed in .*train\.txt have no annotation file: "
                                                 r"train/ABF10/meta/0001\.pkl"):
        HO3DDataset(tmp_path, "train", image_size=32)
    meta.write_bytes(pickle.dumps(data, protocol=2))
    ds = HO3DDataset(tmp_path, "train", image_size=32)
    meta.unlink()  # removed after the build: the read names it
    with pytest.raises(DatasetFormatError, match=r"annotation file not found: .*ABF10/meta/0001\.pkl"):
        ds[1]
    data["camMat"] = np.eye(4)
    meta.write_bytes(pickle.dumps(data, protocol=2))
    with pytest.raises(DatasetFormatError, match=r"0001\.pkl: 'camMat' has shape \(4, 4\); expected \(3, 3\)"):
        ds[1]
    meta.write_bytes(b"\x80\x02garbage")
    with pytest.raises(DatasetFormatError, match=r"cannot read annotation file .*0001\.pkl"):
        ds[1]


def test_missing_rgb_is_counted_as_a_bad_image(tmp_path, caplog):
    make_ho3d_tree(tmp_path, sequences=("ABF10", "MC1"), frames=2, eval_sequences=("SM1",), eval_frames=1)
    img = tmp_path / "train" / "MC1" / "rgb" / "0000.png"
    img.unlink()
    ds = HO3DDataset(tmp_path, "train", image_size=32, max_bad_fraction=0.25)
    with caplog.at_level(logging.WARNING):
        s = ds[2]
    assert s["name"] == "MC1/0001" and ds.bad_files.count == 1
    assert any("MC1/rgb/0000.png" in r.getMessage() and "file not found" in r.getMessage() for r in caplog.records)
    with pytest.raises(RuntimeError, match=r"1 bad image files out of 4.*MC1/rgb/0000\.png"):
        HO3DDataset(tmp_path, "train", image_size=32, max_bad_fraction=0.0)[2]


def test_detections_of_another_split_or_dataset_names_are_rejected(v2, tmp_path):
    root, _ = v2
    ev = Detections(["SM1/0000"], np.zeros((1, 21, 2)), np.ones((1, 21)), dataset="ho3d", split="evaluation")
    ev.save(tmp_path / "ev.json")
    with pytest.raises(DetectionsError, match=r"ev\.json holds detections for split 'evaluation'"):
        HO3DDataset(root, "train", detections=tmp_path / "ev.json")
    fh = Detections(["00000000"], np.zeros((1, 21, 2)), np.ones((1, 21)), split="train")
    fh.save(tmp_path / "fh.json")
    with pytest.raises(DatasetFormatError, match=r"6 of 6 images have no detection in .*fh\.json"):
        HO3DDataset(root, "train", detections=tmp_path / "fh.json")


def test_detections_kept_outside_the_dataset_folder_is_one_key(tmp_path):
    from handrecon.cli import compose_config

    for data, splits in (("ho3d", ("train", "train", "evaluation")), ("freihand", ("training", "training", "evaluation"))):
        cfg = compose_config([f"data={data}", "data.root=/data/X", "data.detections_dir=/elsewhere/dets"], tmp_path / data)
        got = [cfg.data[k].detections for k in ("train_dataset", "val_dataset", "test_dataset")]
        assert got == [f"/elsewhere/dets/{s}.json" for s in splits], data
        cfg = compose_config([f"data={data}", "data.root=/data/X"], tmp_path / data)
        assert cfg.data.train_dataset.detections == f"/data/X/detections/{splits[0]}.json"  # default: inside the root
