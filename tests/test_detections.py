"""The detections schema: round trip, imports, growth, and clear errors."""

import json

import numpy as np
import pytest

from handrecon.data.detections import Detections, DetectionsError, _image_id


def test_round_trip_and_split_check(tmp_path):
    d = Detections.empty("freihand", "training", "openpose")
    for i in range(40):  # grows past the initial capacity
        d.add(f"{i:08d}", np.full((21, 2), float(i)), np.linspace(0, 1, 21))
    d.add("00000003", np.zeros((21, 2)), np.zeros(21))  # replace, not append
    p = tmp_path / "training.json"
    d.save(p)
    e = Detections.load(p, split="training", dataset="freihand")
    assert len(e) == 40 and e.names == d.names
    assert np.allclose(e.get("00000039")[0], 39.0) and np.allclose(e.get("00000003")[1], 0.0)
    with pytest.raises(DetectionsError, match="split 'training', but split 'evaluation'"):
        Detections.load(p, split="evaluation")
    with pytest.raises(KeyError, match="no detection for image 'nope'"):
        e.get("nope")


def test_s2hand_list_import(tmp_path):
    xy = np.random.default_rng(0).uniform(0, 224, (3, 21, 2))
    conf = np.ones((3, 21, 1)) * 0.5
    names = ["training/rgb/00000000.jpg", "training/rgb/00000001.jpg", "training/rgb/00000002.jpg"]
    p = tmp_path / "freihand-train.json"
    p.write_text(json.dumps([xy.tolist(), conf.tolist(), names]))
    d = Detections.load(p, split="training")
    assert d.names == ["00000000", "00000001", "00000002"] and d.detector == "s2hand-import"
    assert np.allclose(d.get("00000002")[0], xy[2], atol=1e-4) and np.allclose(d.conf, 0.5)


def test_image_ids_keep_ho3d_sequences():
    assert _image_id("train/ABF10/rgb/0000.png") == "ABF10/0000"
    assert _image_id("train/MC1/rgb/0000.png") == "MC1/0000"
    assert _image_id("training/rgb/00000123.jpg") == "00000123"
    assert _image_id("ABF10/0000") == "ABF10/0000"


def test_bad_files(tmp_path):
    with pytest.raises(DetectionsError, match="detections file not found"):
        Detections.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DetectionsError, match="not valid JSON"):
        Detections.load(bad)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"format": "handrecon.detections", "items": {"a": {"xy": [[0, 0, 0]] * 21, "conf": [1] * 21}}}))
    with pytest.raises(DetectionsError, match=r"item 'a' has xy \(21, 3\)"):
        Detections.load(wrong)
    d = Detections.empty()
    with pytest.raises(DetectionsError, match=r"expected xy \(21, 2\)"):
        d.add("x", np.zeros((20, 2)), np.zeros(20))
