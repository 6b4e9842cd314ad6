"""Offline 2D detection: OpenPose hand network + post-processing, MediaPipe conversion,
the handrecon-model backend, and the ``python -m handrecon.detect`` command."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import scipy.ndimage
import torch
from torch import nn

from handrecon.data.detections import Detections
from handrecon.detect import __main__ as cli
from handrecon.detect.backends import (
    DetectorBackend,
    HandreconBackend,
    box_from_xyxy,
    box_matrix,
    build_backend,
    crop_to_image,
    image_box,
    load_box_file,
    resolve_box,
    warp_crop,
)
from handrecon.detect.mediapipe_backend import MediaPipeHand, landmarks_to_pixels, result_to_detection
from handrecon.detect.openpose_hand import (
    HandPoseNet,
    OpenPoseHand,
    OpenPoseWeightsError,
    _strip_prefix,
    find_peaks,
    gaussian_blur,
    heatmaps_to_grid,
    pad_to_stride,
    preprocess,
)


def _gauss2d(h: int, w: int, cu: float, cv: float, sigma: float, amp: float = 1.0) -> np.ndarray:
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    return amp * np.exp(-((u - cu) ** 2 + (v - cv) ** 2) / (2 * sigma**2))


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory) -> tuple[Path, dict]:
    """A randomly initialised HandPoseNet state dict saved as a .pth (the real weights are not available)."""
    torch.manual_seed(0)
    sd = HandPoseNet().state_dict()
    path = tmp_path_factory.mktemp("weights") / "hand_pose_model.pth"
    torch.save(sd, path)
    return path, sd


# ---------------------------------------------------------------- the network


def test_layer_names_and_shapes_follow_the_caffe_model():
    sd = HandPoseNet().state_dict()
    assert list(sd)[:2] == ["conv1_1.weight", "conv1_1.bias"] and list(sd)[-1] == "Mconv7_stage6.bias"
    assert sd["conv1_1.weight"].shape == (64, 3, 3, 3)
    assert sd["conv5_3_CPM.weight"].shape == (128, 512, 3, 3)
    assert sd["conv6_2_CPM.weight"].shape == (22, 512, 1, 1)
    assert sd["Mconv1_stage2.weight"].shape == (128, 150, 7, 7)  # 22 heatmaps + 128 features
    assert sd["Mconv7_stage6.weight"].shape == (22, 128, 1, 1)
    # 15 trunk convolutions, 2 in stage 1, 7 in each of stages 2..6
    assert len(sd) == 2 * (15 + 2 + 5 * 7)


def test_heatmap_shapes():
    net = HandPoseNet().eval()
    with torch.no_grad():
        assert net(torch.zeros(1, 3, 368, 368)).shape == (1, 22, 46, 46)
        assert net(torch.zeros(2, 3, 64, 48)).shape == (2, 22, 8, 6)


def test_checkpoint_round_trip(random_weights):
    path, sd = random_weights
    net = HandPoseNet.from_checkpoint(path)
    loaded = net.state_dict()
    assert loaded.keys() == sd.keys()
    assert all(torch.equal(loaded[k], sd[k]) for k in sd)


def test_prefixed_keys_map_to_caffe_names():
    assert _strip_prefix("model1_0.conv1_1.weight") == "conv1_1.weight"
    assert _strip_prefix("model6.Mconv7_stage6.bias") == "Mconv7_stage6.bias"
    assert _strip_prefix("module.conv6_1_CPM.weight") == "conv6_1_CPM.weight"
    assert _strip_prefix("conv4_2.bias") == "conv4_2.bias"


def test_missing_weights_say_where_to_get_them(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        HandPoseNet.from_checkpoint(tmp_path / "nope.pth")
    msg = str(e.value)
    assert "nope.pth" in msg and "hand_pose_model.pth" in msg and "pytorch-openpose" in msg and "--weights" in msg


def test_wrong_keys_are_listed(tmp_path):
    keys = list(HandPoseNet().state_dict())
    sd = {k: torch.zeros(1) for k in keys if k != "conv1_1.weight"}
    sd["foo.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "w.pth")
    with pytest.raises(OpenPoseWeightsError, match=r"1 missing keys \[conv1_1.weight\].*1 unexpected keys \[foo.weight\]"):
        HandPoseNet.from_checkpoint(tmp_path / "w.pth")
    torch.save({k: torch.zeros(1) for k in keys}, tmp_path / "s.pth")
    with pytest.raises(OpenPoseWeightsError, match="wrong shape"):
        HandPoseNet.from_checkpoint(tmp_path / "s.pth")


# ---------------------------------------------------------------- pre/post-processing


def test_preprocess_is_bgr_over_256_minus_half():
    img = np.zeros((1, 2, 2, 3), np.uint8)
    img[0, 1, 0] = (255, 0, 128)  # RGB at row 1, column 0
    x = preprocess(img)
    assert x.shape == (1, 3, 2, 2)
    assert torch.allclose(x[0, :, 1, 0], torch.tensor([128 / 256 - 0.5, -0.5, 255 / 256 - 0.5]))


def test_pad_to_stride():
    img = np.random.default_rng(0).integers(0, 255, (2, 60, 61, 3), dtype=np.uint8)
    p = pad_to_stride(img, 8, 128)
    assert p.shape == (2, 64, 64, 3)
    assert np.array_equal(p[:, :60, :61], img)
    assert (p[:, 60:] == 128).all() and (p[:, :, 61:] == 128).all()
    assert pad_to_stride(img[:, :56, :48]).shape == (2, 56, 48, 3)


def test_gaussian_blur_matches_scipy():
    x = np.random.default_rng(1).random((2, 3, 20, 17))
    got = gaussian_blur(torch.from_numpy(x), 3.0).numpy()
    ref = np.stack([[scipy.ndimage.gaussian_filter(c, 3.0, mode="nearest", truncate=4.0) for c in b] for b in x])
    np.testing.assert_allclose(got, ref, atol=1e-10)


def test_find_peaks_subpixel_score_and_threshold():
    H, W, s = 40, 50, 2.0
    peaks = [(12.3, 20.7, 0.8), (30.6, 9.2, 0.5), (25.0, 30.0, 0.02)]  # (u, v, amplitude); the last is below 0.05
    heat = np.stack([_gauss2d(H, W, u, v, s, a) for u, v, a in peaks])[None]  # (1, 3, H, W)
    uv, score = find_peaks(torch.from_numpy(heat), sigma=3.0, threshold=0.05)
    for k, (u, v, a) in enumerate(peaks[:2]):
        np.testing.assert_allclose(uv[0, k].numpy(), [u, v], atol=0.02)
        iu, iv = round(u), round(v)  # the score is the raw map at the integer maximum
        assert score[0, k].item() == pytest.approx(a * np.exp(-((iu - u) ** 2 + (iv - v) ** 2) / (2 * s * s)), rel=1e-6)
    assert score[0, 2].item() == 0.0 and uv[0, 2].tolist() == [0.0, 0.0]
    # scores are clipped to [0, 1]
    _, big = find_peaks(torch.from_numpy(heat * 5.0), sigma=0.0)
    assert big[0, 0].item() == 1.0


def test_heatmaps_to_grid_maps_cells_to_crop_pixels():
    # crop of S=60 px padded to 64 (8 x 8 cells) resized to a 90 px grid; a peak at crop pixel p
    # lies at cell coordinate (p + 0.5) / 8 - 0.5 and must come back at (p + 0.5) * 90 / 60 - 0.5.
    p = np.array([21.0, 37.0])
    c = (p + 0.5) / 8 - 0.5
    low = _gauss2d(8, 8, c[0], c[1], 1.2)[None, None]
    grid = heatmaps_to_grid(torch.from_numpy(low), (60, 60), 90)
    assert grid.shape == (1, 1, 90, 90)
    uv, _ = find_peaks(grid, sigma=0.0, threshold=0.0)
    np.testing.assert_allclose(uv[0, 0].numpy(), (p + 0.5) * 90 / 60 - 0.5, atol=0.2)


class BlobFinder(nn.Module):
    """Stand-in for the network: finds the bright blob in its (preprocessed) input and outputs a
    Gaussian at that place on the stride-8 grid for all 22 channels (amplitude 0.9)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, P, _ = x.shape
        w = torch.relu(x.mean(1) - 0.2) ** 2  # blob ~ +0.5, background -0.5, padding 0
        v, u = torch.meshgrid(torch.arange(P, dtype=x.dtype), torch.arange(P, dtype=x.dtype), indexing="ij")
        cu = (w * u).sum((1, 2)) / w.sum((1, 2))
        cv = (w * v).sum((1, 2)) / w.sum((1, 2))
        g = P // 8
        gv, gu = torch.meshgrid(torch.arange(g, dtype=x.dtype), torch.arange(g, dtype=x.dtype), indexing="ij")
        cu, cv = (cu + 0.5) / 8 - 0.5, (cv + 0.5) / 8 - 0.5
        d2 = (gu[None] - cu[:, None, None]) ** 2 + (gv[None] - cv[:, None, None]) ** 2
        return (0.9 * torch.exp(-d2 / 2.0))[:, None].expand(B, 22, g, g)


def _blob_image(h: int, w: int, q: tuple[float, float], sigma: float = 2.5) -> np.ndarray:
    img = (255 * _gauss2d(h, w, q[0], q[1], sigma)).round().astype(np.uint8)
    return np.repeat(img[..., None], 3, -1)


def test_multiscale_pipeline_maps_peaks_back_to_image_pixels():
    det = OpenPoseHand(BlobFinder(), scales=(0.75, 1.25), boxsize=64, sigma=3.0, threshold=0.05)
    q1, q2 = (52.3, 20.6), (30.2, 61.7)
    im1, im2 = _blob_image(60, 80, q1), _blob_image(90, 70, q2)
    # a box around the blob (partly outside the image), and the full-image box
    out = det.detect_batch([im1, im2], [(45.0, 25.0, 50.0), None])
    for (xy, conf), q in zip(out, (q1, q2)):
        assert xy.shape == (21, 2) and conf.shape == (21,) and xy.dtype == np.float32
        np.testing.assert_allclose(xy, np.broadcast_to(q, (21, 2)), atol=0.25)  # a half-pixel slip would fail
        np.testing.assert_allclose(conf, 0.9, atol=0.05)
    xy1, _ = det.detect(im1, (45.0, 25.0, 50.0))
    np.testing.assert_allclose(xy1, out[0][0], atol=1e-4)


def test_random_weights_detect_returns_image_pixels_and_confidences():
    torch.manual_seed(0)
    det = OpenPoseHand(HandPoseNet(), scales=(1.0,), boxsize=64, threshold=0.0)
    img = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    xy, conf = det.detect(img)
    assert xy.shape == (21, 2) and conf.shape == (21,)
    assert ((conf >= 0) & (conf <= 1)).all()
    # the full-image box of a 70 x 50 image is the square [-0.5, 69.5] x [-10.5, 59.5]
    assert (xy[:, 0] >= -0.5).all() and (xy[:, 0] <= 69.5).all()
    assert (xy[:, 1] >= -10.5).all() and (xy[:, 1] <= 59.5).all()


# ---------------------------------------------------------------- boxes and crops


def test_boxes():
    assert image_box(60, 100, "full") == (49.5, 29.5, 100.0)
    assert image_box(60, 100, "center") == (49.5, 29.5, 60.0)
    assert box_from_xyxy(10, 20, 50, 40) == (30.0, 30.0, 40.0)
    assert box_from_xyxy(10, 20, 50, 40, pad=1.5) == (30.0, 30.0, 60.0)
    assert resolve_box(None, (60, 100, 3)) == (49.5, 29.5, 100.0)
    # the whole square image is the identity crop: pixel centres map onto themselves
    A = box_matrix(image_box(48, 48), 48)
    np.testing.assert_allclose(A, np.eye(3), atol=1e-12)
    with pytest.raises(ValueError, match="side > 0"):
        resolve_box((1, 2, 0), (5, 5, 3))
    with pytest.raises(ValueError, match="empty"):
        box_from_xyxy(10, 10, 5, 20)
    with pytest.raises(ValueError, match="box_mode"):
        image_box(5, 5, "tight")


def test_box_file(tmp_path):
    f = tmp_path / "boxes.json"
    f.write_text(json.dumps({"a": [10, 20, 50, 40]}))
    assert load_box_file(f) == {"a": (30.0, 30.0, 40.0)}
    f.write_text(json.dumps({"a": [10, 20, 50]}))
    with pytest.raises(ValueError, match="'a'.*4 numbers"):
        load_box_file(f)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_box_file(tmp_path / "missing.json")


@pytest.mark.parametrize("out_size", [20, 8])  # 0.5x (plain warp) and 0.2x (area-reduced first)
def test_warp_crop_is_a_crop_of_exactly_A(out_size):
    h, w = 80, 100
    v, u = np.mgrid[0:h, 0:w]
    img = np.stack([u, v, np.full_like(u, 50)], -1).astype(np.uint8)  # R = column, G = row
    box = (40.0, 30.0, 40.0)
    A = box_matrix(box, out_size)
    crop = warp_crop(img, A, out_size, border=128)
    assert crop.shape == (out_size, out_size, 3)
    jj, ii = np.mgrid[0:out_size, 0:out_size]
    src = crop_to_image(np.stack([ii, jj], -1).reshape(-1, 2).astype(np.float64), A).reshape(out_size, out_size, 2)
    np.testing.assert_allclose(crop[..., 0], src[..., 0], atol=1.0)
    np.testing.assert_allclose(crop[..., 1], src[..., 1], atol=1.0)
    # outside the image: the border value
    far = warp_crop(img, box_matrix((-60.0, 30.0, 40.0), out_size), out_size, border=128)
    assert (far == 128).all()


def test_crop_to_image_inverts_the_crop():
    A = box_matrix((30.0, 40.0, 64.0), 128)
    pts = np.array([[3.0, 5.0], [60.0, 20.0]])
    crop_pts = (A[:2, :2] @ pts.T).T + A[:2, 2]
    np.testing.assert_allclose(crop_to_image(crop_pts, A), pts, atol=1e-5)


# ---------------------------------------------------------------- handrecon backend


class FixedKeypoints(nn.Module):
    """Fake trained model: fixed crop keypoints uv_k = (10 + k, 40 - k) and conf in [-0.5, 1.5]."""

    def __init__(self):
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def predict_keypoints(self, images):
        self.seen.append(images)
        B = images.shape[0]
        k = torch.arange(21, dtype=torch.float32)
        uv = torch.stack([10 + k, 40 - k], -1).expand(B, 21, 2)
        conf = torch.linspace(-0.5, 1.5, 21).expand(B, 21)
        return uv, conf

    @classmethod
    def load_from_checkpoint(cls, path, map_location=None):
        assert Path(path).is_file()
        return cls()


def test_handrecon_backend_maps_crop_keypoints_to_image_pixels():
    model = FixedKeypoints()
    backend = HandreconBackend(model, image_size=50)
    img = np.full((60, 100, 3), 200, np.uint8)  # H 60, W 100
    (xy_full, conf), (xy_box, _) = backend.detect_batch([img, img], [None, (30.0, 20.0, 25.0)])
    k = np.arange(21)
    uv = np.stack([10 + k, 40 - k], -1).astype(np.float64)
    # the box edge c - side/2 is the crop edge -0.5, so the centre of crop pixel u' (of S px),
    # u' + 0.5 crop px from that edge, is at image pixel u = c - side/2 + (u' + 0.5) side / S
    for xy, (cx, cy, side) in ((xy_full, (49.5, 29.5, 100.0)), (xy_box, (30.0, 20.0, 25.0))):
        exp = np.array([cx, cy]) - side / 2 + (uv + 0.5) * side / 50
        np.testing.assert_allclose(xy, exp, atol=1e-4)
    np.testing.assert_allclose(conf, np.clip(np.linspace(-0.5, 1.5, 21), 0, 1), atol=1e-6)
    x = model.seen[0]
    assert x.shape == (2, 3, 50, 50) and x.dtype == torch.float32
    # full box of a 100 x 60 image: crop rows above the image are black, rows inside are 200/255
    assert x[0, :, 0].max().item() == 0.0
    assert x[0, :, 25].min().item() == pytest.approx(200 / 255)


def test_build_backend(tmp_path):
    assert isinstance(build_backend("handrecon", model=FixedKeypoints(), image_size=32), HandreconBackend)
    with pytest.raises(ValueError, match="unknown detector backend 'yolo'"):
        build_backend("yolo")
    with pytest.raises(ValueError, match="checkpoint"):
        build_backend("handrecon")
    with pytest.raises(FileNotFoundError, match="x.ckpt"):
        build_backend("handrecon", checkpoint=tmp_path / "x.ckpt")
    with pytest.raises(TypeError, match="predict_keypoints"):
        HandreconBackend(nn.Linear(2, 2))
    ckpt = tmp_path / "m.ckpt"
    ckpt.write_bytes(b"x")
    b = build_backend("handrecon", checkpoint=ckpt, model_class=f"{__name__}:FixedKeypoints", image_size=32)
    assert isinstance(b.model, FixedKeypoints) and b.image_size == 32


def test_handrecon_training_checkpoint_is_loaded_with_its_image_size(tmp_path, monkeypatch):
    import handrecon.cli.checkpoint as ck

    calls = []

    def fake_load_module(path, map_location="cpu"):
        calls.append((Path(path), map_location))
        return SimpleNamespace(net=FixedKeypoints()), SimpleNamespace(data=SimpleNamespace(image_size=48))

    monkeypatch.setattr(ck, "load_module", fake_load_module)
    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(b"x")
    out = tmp_path / "det.json"
    d = tmp_path / "imgs"
    d.mkdir()
    cv2.imwrite(str(d / "x.png"), np.zeros((48, 48, 3), np.uint8))
    assert cli.main(["--images", str(d), "--backend", "handrecon", "--weights", str(ckpt), "--out", str(out), "--no-progress"]) == 0
    assert calls == [(ckpt, "cpu")]
    det = Detections.load(out)
    assert det.detector == "handrecon"
    # 48 px image, 48 px crop: the crop keypoints are the image keypoints
    k = np.arange(21)
    np.testing.assert_allclose(det.get("x")[0], np.stack([10 + k, 40 - k], -1), atol=0.01)


# ---------------------------------------------------------------- mediapipe


def test_mediapipe_landmarks_to_pixels_keeps_order():
    lm = np.stack([np.linspace(0, 1, 21), np.linspace(1, 0, 21), np.zeros(21)], -1)
    px = landmarks_to_pixels(lm, width=200, height=100)
    np.testing.assert_allclose(px[0], [-0.5, 99.5])
    np.testing.assert_allclose(px[20], [199.5, -0.5])
    np.testing.assert_allclose(px[:, 0], np.linspace(0, 1, 21) * 200 - 0.5, atol=1e-4)
    with pytest.raises(ValueError, match="21 landmarks"):
        landmarks_to_pixels(lm[:20], 10, 10)


def test_mediapipe_result_takes_the_most_confident_hand():
    def hand(offset):
        return [SimpleNamespace(x=0.01 * k + offset, y=0.5, z=0.0) for k in range(21)]

    res = SimpleNamespace(
        hand_landmarks=[hand(0.0), hand(0.5)],
        handedness=[[SimpleNamespace(score=0.6, category_name="Left")], [SimpleNamespace(score=0.9, category_name="Right")]],
    )
    xy, conf = result_to_detection(res, width=100, height=50)
    np.testing.assert_allclose(xy[:, 0], (0.01 * np.arange(21) + 0.5) * 100 - 0.5, atol=1e-4)
    np.testing.assert_allclose(xy[:, 1], 24.5)
    np.testing.assert_allclose(conf, 0.9)
    xy, conf = result_to_detection(SimpleNamespace(hand_landmarks=[], handedness=[]), 100, 50)
    assert not xy.any() and not conf.any()


def test_mediapipe_missing_task_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="hand_landmarker.task"):
        MediaPipeHand(tmp_path / "hand_landmarker.task")


def test_mediapipe_absent_says_how_to_install(tmp_path):
    try:
        import mediapipe  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("mediapipe is installed")
    task = tmp_path / "hand_landmarker.task"
    task.write_bytes(b"x")
    with pytest.raises(ImportError, match="pip install mediapipe"):
        MediaPipeHand(task)


def test_mediapipe_real_landmarker_finds_no_hand_on_a_blank_image():
    pytest.importorskip("mediapipe", reason="mediapipe is not installed (optional backend)")
    import os

    task = os.environ.get("HANDRECON_MEDIAPIPE_TASK")
    if not task or not Path(task).is_file():
        pytest.skip("set HANDRECON_MEDIAPIPE_TASK to a hand_landmarker.task file to run the real landmarker")
    backend = build_backend("mediapipe", task_file=task)
    xy, conf = backend.detect(np.full((128, 128, 3), 255, np.uint8))
    assert xy.shape == (21, 2) and not conf.any()
    backend.close()


# ---------------------------------------------------------------- command line


class CountingBackend(DetectorBackend):
    """Records what it is asked to detect; returns xy = (image width, image height) per keypoint."""

    name = "openpose"

    def __init__(self, fail_after: int | None = None):
        self.images: list[tuple[int, int]] = []
        self.boxes: list = []
        self.fail_after = fail_after

    def detect_batch(self, images, boxes=None):
        if self.fail_after is not None and len(self.images) >= self.fail_after:
            raise KeyboardInterrupt
        self.images += [im.shape[:2] for im in images]
        self.boxes += list(boxes) if boxes is not None else [None] * len(images)
        return [(np.tile([im.shape[1], im.shape[0]], (21, 1)).astype(np.float32), np.full(21, 0.5, np.float32)) for im in images]


def _image_folder(tmp_path: Path) -> Path:
    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(0)
    for name, ext, size in (("a", ".png", (96, 96)), ("b", ".jpg", (80, 96)), ("c", ".jpeg", (96, 64))):
        img = rng.integers(0, 256, size + (3,), dtype=np.uint8)
        assert cv2.imwrite(str(d / f"{name}{ext}"), img)
    (d / "notes.txt").write_text("not an image")
    data = (d / "b.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (d / "text.png").write_text("this is text, not a PNG")
    return d


def test_cli_openpose_end_to_end_and_resume(tmp_path, random_weights, monkeypatch, capsys):
    weights, _ = random_weights
    d = _image_folder(tmp_path)
    out = tmp_path / "det.json"
    args = ["--images", str(d), "--backend", "openpose", "--weights", str(weights), "--out", str(out),
            "--boxsize", "64", "--scales", "1.0", "--batch-size", "2", "--no-progress"]
    rc = cli.main(args + ["--max-bad-fraction", "0.5"])  # 2 of 5 images are bad
    assert rc == 0
    err = capsys.readouterr().err
    assert "truncated.jpg" in err and "text.png" in err and "notes.txt" not in err
    doc = json.loads(out.read_text())
    assert doc["format"] == "handrecon.detections" and doc["detector"] == "openpose"
    assert doc["dataset"] == "user" and doc["split"] == "all"
    det = Detections.load(out)
    assert sorted(det.names) == ["a", "b", "c"]
    assert det.xy.shape == (3, 21, 2) and ((det.conf >= 0) & (det.conf <= 1)).all()

    # resume: nothing new is detected; the bad files are retried and now exceed the default 1 %
    counting = CountingBackend()
    monkeypatch.setattr(cli, "make_backend", lambda a: counting)
    rc = cli.main(args)
    assert rc == 1 and counting.images == []
    again = Detections.load(out)
    assert again.names == det.names and np.array_equal(again.xy, det.xy)


def test_cli_resumes_a_partial_file_and_saves_periodically(tmp_path, monkeypatch):
    d = _image_folder(tmp_path)
    for bad in ("truncated.jpg", "text.png"):
        (d / bad).unlink()
    out = tmp_path / "det.json"
    Detections(["b"], np.zeros((1, 21, 2)), np.ones((1, 21)), "user", "all", "openpose").save(out)
    counting = CountingBackend()
    monkeypatch.setattr(cli, "make_backend", lambda a: counting)
    args = ["--images", str(d), "--weights", "w.pth", "--out", str(out), "--no-progress"]
    assert cli.main(args) == 0
    assert counting.images == [(96, 96), (96, 64)]  # a and c only
    det = Detections.load(out)
    assert sorted(det.names) == ["a", "b", "c"]
    np.testing.assert_allclose(det.get("c")[0], np.tile([64, 96], (21, 1)))
    assert det.get("b")[1].tolist() == [1.0] * 21  # the earlier result is kept

    # a run interrupted after its first batch keeps what --save-every saved
    out2 = tmp_path / "det2.json"
    monkeypatch.setattr(cli, "make_backend", lambda a: CountingBackend(fail_after=1))
    with pytest.raises(KeyboardInterrupt):
        cli.main(["--images", str(d), "--weights", "w.pth", "--out", str(out2), "--batch-size", "1", "--save-every", "1", "--no-progress"])
    assert Detections.load(out2).names == ["a"]


def test_cli_box_file(tmp_path, monkeypatch):
    d = _image_folder(tmp_path)
    for bad in ("truncated.jpg", "text.png"):
        (d / bad).unlink()
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"a": [0, 0, 40, 20], "b": [10, 10, 30, 30], "c": [5, 5, 15, 45]}))
    counting = CountingBackend()
    monkeypatch.setattr(cli, "make_backend", lambda a: counting)
    args = ["--images", str(d), "--weights", "w.pth", "--out", str(tmp_path / "o.json"), "--box", str(boxes), "--no-progress"]
    assert cli.main(args) == 0
    assert counting.boxes == [box_from_xyxy(0, 0, 40, 20), box_from_xyxy(10, 10, 30, 30), box_from_xyxy(5, 5, 15, 45)]
    boxes.write_text(json.dumps({"a": [0, 0, 40, 20]}))
    assert cli.main(args[:-5] + ["--out", str(tmp_path / "o2.json"), "--box", str(boxes), "--no-progress"]) == 2


def test_cli_errors(tmp_path, capsys):
    d = _image_folder(tmp_path)
    out = tmp_path / "det.json"
    rc = cli.main(["--images", str(d), "--weights", str(tmp_path / "missing.pth"), "--out", str(out)])
    assert rc == 2 and "hand_pose_model.pth" in capsys.readouterr().err
    assert cli.main(["--images", str(d), "--out", str(out)]) == 2  # no --weights
    Detections(["a"], np.zeros((1, 21, 2)), np.ones((1, 21)), "freihand", "training", "openpose").save(out)
    rc = cli.main(["--images", str(d), "--weights", "w.pth", "--out", str(out)])
    assert rc == 2 and "split 'training'" in capsys.readouterr().err
    assert cli.main(["--images", str(tmp_path / "nodir"), "--weights", "w.pth", "--out", str(out)]) == 2
    (d / "a.jpg").write_bytes((d / "b.jpg").read_bytes())
    with pytest.raises(cli.CLIError, match="share the name 'a'"):
        cli.list_folder(d)


def test_cli_imports(tmp_path):
    rng = np.random.default_rng(0)
    xy, conf = rng.random((2, 21, 2)) * 100, rng.random((2, 21, 1))
    s2 = tmp_path / "s2hand.json"
    s2.write_text(json.dumps([xy.tolist(), conf.tolist(), ["training/rgb/00000001.jpg", "training/rgb/00000002.jpg"]]))
    out = tmp_path / "imp.json"
    assert cli.main(["--import-s2hand", str(s2), "--dataset", "freihand", "--split", "training", "--out", str(out)]) == 0
    det = Detections.load(out, split="training", dataset="freihand")
    assert det.names == ["00000001", "00000002"] and det.detector == "s2hand-import"
    np.testing.assert_allclose(det.xy, xy, atol=0.006)
    np.testing.assert_allclose(det.conf, conf[..., 0], atol=1e-4)
    assert cli.main(["--import-s2hand", str(s2), "--out", str(out)]) == 2  # exists, no --overwrite

    op = tmp_path / "op"
    op.mkdir()
    k = np.concatenate([xy[0], conf[0]], -1).reshape(-1)
    (op / "img7_keypoints.json").write_text(json.dumps({"people": [{"hand_right_keypoints_2d": k.tolist()}]}))
    out2 = tmp_path / "imp2.json"
    assert cli.main(["--import-openpose", str(op), "--out", str(out2)]) == 0
    det = Detections.load(out2)
    assert det.names == ["img7"] and det.dataset == "user"
    np.testing.assert_allclose(det.get("img7")[0], xy[0], atol=0.006)
