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


def _s2hand_published_list(n: int = 4, seed: int = 0):
    """S2HAND's published list exactly as its detector script (examples/openpose_detector/hand_detect.py,
    pytorch-openpose's Hand) writes it: [xy, conf, names]; xy integer peak pixels (N, 21, 2), conf one
    value per joint (N, 21, 1), a joint not found is [0, 0] with [0.0]; each name a one-element list
    holding the file name (np.array([file]).tolist())."""
    rng = np.random.default_rng(seed)
    xy = rng.integers(0, 224, (n, 21, 2))
    conf = rng.uniform(0.05, 0.9, (n, 21, 1))
    xy[1, 3], conf[1, 3] = 0, 0.0  # a joint the detector did not find
    names = [[f"{i:08d}.jpg"] for i in range(n)]
    return xy, conf, [xy.tolist(), conf.tolist(), names]


def test_s2hand_published_list_with_one_element_name_lists(tmp_path):
    xy, conf, doc = _s2hand_published_list()
    p = tmp_path / "freihand-train.json"
    p.write_text(json.dumps(doc))
    assert p.read_text().count('["00000002.jpg"]') == 1  # the layout under test
    d = Detections.load(p, split="training", dataset="freihand")
    assert d.names == ["00000000", "00000001", "00000002", "00000003"]
    for i in range(4):  # every image is found under its FreiHAND id
        assert f"{i:08d}" in d
        got_xy, got_conf = d.get(f"{i:08d}")
        np.testing.assert_allclose(got_xy, xy[i], atol=1e-4)
        np.testing.assert_allclose(got_conf, conf[i, :, 0], atol=1e-6)
    assert d.get("00000001")[1][3] == 0.0
    # a name list of another length is a clear error naming the entry
    doc[2][1] = ["00000001.jpg", "extra"]
    p.write_text(json.dumps(doc))
    with pytest.raises(DetectionsError, match=r"S2HAND list name 1 is \['00000001.jpg', 'extra'\]"):
        Detections.load(p)


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
