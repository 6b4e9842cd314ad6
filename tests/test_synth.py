"""Synthetic dataset: detector noise model, backgrounds, scene sampling, generation, FreiHAND layout."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from handrecon.data import synth
from handrecon.data.backgrounds import draw_occluder, random_background, value_noise
from handrecon.data.detections import Detections
from handrecon.data.detector_noise import (
    NEIGHBOURS,
    NoiseModel,
    apply_noise,
    confidence_from_error,
    joint_radius,
    joint_sigma,
    sample_depth,
    self_occlusion,
)
from handrecon.geometry.camera import project_np
from handrecon.joints import FINGERTIPS, NUM_JOINTS

# ------------------------------------------------------------------------------------ noise model


def _noise_stats(model: NoiseModel, n: int = 3000, seed: int = 0):
    rng = np.random.default_rng(seed)
    uv = rng.uniform(40, 180, (NUM_JOINTS, 2))
    occ = np.zeros(NUM_JOINTS, bool)
    occ[[2, 6]] = True
    self_occ = np.zeros(NUM_JOINTS, bool)
    self_occ[[3, 7]] = True
    err, conf, outl, miss = [], [], [], []
    for _ in range(n):
        d = apply_noise(uv, occ, self_occ, 224, rng, model)
        err.append(np.linalg.norm(d.xy - uv, axis=-1))
        conf.append(d.conf)
        outl.append(d.outlier)
        miss.append(d.missing)
        assert np.all(d.xy[d.missing] == 0) and np.all(d.conf[d.missing] == 0)
    return uv, occ, self_occ, np.array(err), np.array(conf), np.array(outl), np.array(miss)


def test_noise_statistics_match_the_config():
    model = NoiseModel(difficulty_logstd=0.0)
    uv, occ, self_occ, err, conf, outl, miss = _noise_stats(model)
    n = err.size
    clean = ~outl & ~miss
    plain = np.ones(NUM_JOINTS, bool)
    plain[list(FINGERTIPS)] = False
    plain &= ~occ & ~self_occ
    # Rayleigh mean of a 2D isotropic Gaussian: sigma * sqrt(pi / 2)
    expected = model.sigma_px * math.sqrt(math.pi / 2)
    mean_plain = err[:, plain][clean[:, plain]].mean()
    assert abs(mean_plain - expected) / expected < 0.03
    tips = np.array([j for j in FINGERTIPS if not occ[j] and not self_occ[j]])
    mean_tip = err[:, tips][clean[:, tips]].mean()
    assert abs(mean_tip / mean_plain - model.tip_factor) < 0.1
    mean_self = err[:, self_occ & ~np.isin(np.arange(21), FINGERTIPS)][clean[:, self_occ]].mean()
    mean_occ = err[:, occ][clean[:, occ]].mean()
    assert abs(mean_self / mean_plain - model.self_occluded_factor) < 0.15
    assert abs(mean_occ / mean_plain - model.occluded_factor) < 0.2
    # rates within 4 binomial standard deviations of the configuration
    p_out = model.p_outlier * (1 - model.p_missing)  # an outlier that is also missing counts as missing
    assert abs(outl.mean() - p_out) < 4 * math.sqrt(p_out * (1 - p_out) / n)
    assert abs(miss.mean() - model.p_missing) < 4 * math.sqrt(model.p_missing * (1 - model.p_missing) / n)
    # confidence says how wrong a detection is
    det = ~miss
    assert spearmanr(conf[det], err[det]).correlation < -0.5
    assert conf.min() >= 0 and conf.max() <= 1
    assert conf[det].min() >= model.conf_min
    lo, hi = model.outlier_conf
    assert conf[outl].min() >= lo - 1e-6 and conf[outl].max() <= hi + 1e-6
    assert conf[:, occ][clean[:, occ]].mean() < conf[:, plain][clean[:, plain]].mean()


def test_outliers_swap_to_neighbouring_fingers_or_jump():
    model = NoiseModel(p_outlier=1.0, p_missing=0.0, outlier_swap_prob=1.0, difficulty_logstd=0.0)
    rng = np.random.default_rng(1)
    uv = rng.uniform(40, 180, (NUM_JOINTS, 2))
    none = np.zeros(NUM_JOINTS, bool)
    d = apply_noise(uv, none, none, 224, rng, model)
    for j in range(1, NUM_JOINTS):
        dist = min(np.linalg.norm(d.xy[j] - uv[k]) for k in NEIGHBOURS[j])
        assert dist < 6 * model.sigma_px * model.tip_factor  # on a neighbouring finger's joint
    model = NoiseModel(p_outlier=1.0, p_missing=0.0, outlier_swap_prob=0.0)
    errs = [np.linalg.norm(apply_noise(uv, none, none, 224, rng, model).xy - uv, axis=-1).mean() for _ in range(50)]
    assert np.mean(errs) > 30  # random places in the image, far from the truth


def test_noise_is_deterministic_and_scales_with_image_size():
    uv = np.full((NUM_JOINTS, 2), 30.0)
    none = np.zeros(NUM_JOINTS, bool)
    a = apply_noise(uv, none, none, 224, np.random.default_rng(5))
    b = apply_noise(uv, none, none, 224, np.random.default_rng(5))
    assert np.array_equal(a.xy, b.xy) and np.array_equal(a.conf, b.conf)
    small = apply_noise(uv, none, none, 112, np.random.default_rng(5))
    np.testing.assert_allclose(small.sigma, a.sigma / 2)


def test_noise_pure_helpers():
    m = NoiseModel(sigma_px=2.0, tip_factor=1.5, self_occluded_factor=2.0, occluded_factor=3.0)
    occ = np.zeros(NUM_JOINTS, bool)
    so = np.zeros(NUM_JOINTS, bool)
    occ[4], so[4], so[1] = True, True, True
    s = joint_sigma(m, occ, so)
    assert s[0] == 2.0 and s[1] == 4.0 and s[8] == 3.0 and s[4] == 2.0 * 1.5 * 2.0 * 3.0
    assert confidence_from_error(np.array([0.0]), 5.0, np.array([0.0]), 0.02)[0] == 1.0
    np.testing.assert_allclose(confidence_from_error(np.array([5.0]), 5.0, np.array([0.0]), 0.02), math.exp(-0.5))
    # self-occlusion: a surface more than radius + tol in front hides the joint; no surface hides nothing
    jz = np.array([0.5, 0.5, 0.5, 0.5])
    sz = np.array([0.49, 0.48, 0.0, 0.46])
    r = np.array([0.008, 0.008, 0.008, 0.008])
    assert self_occlusion(jz, sz, r, 0.005).tolist() == [False, True, False, True]
    depth = np.zeros((4, 5))
    depth[1, 3] = 0.7
    assert sample_depth(depth, np.array([[3.2, 0.8], [-3.0, 1.0], [2.0, 2.0]])).tolist() == [0.7, 0.0, 0.0]
    joints = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    verts = np.array([[0.0, 0.3, 0.0], [0.0, 0.0, 0.4], [1.0, 0.0, 0.2]])
    np.testing.assert_allclose(joint_radius(joints, verts), [0.3, 0.2])


def test_noise_model_validation():
    with pytest.raises(ValueError, match="p_outlier"):
        NoiseModel(p_outlier=1.5)
    with pytest.raises(ValueError, match="sigma_px"):
        NoiseModel(sigma_px=0.0)
    with pytest.raises(ValueError, match="unknown detector-noise option"):
        NoiseModel.from_dict({"sigma": 2.0})
    assert NoiseModel.from_dict(NoiseModel().to_dict()) == NoiseModel()
    with pytest.raises(ValueError, match="uv must be"):
        apply_noise(np.zeros((20, 2)), np.zeros(21), np.zeros(21), 224, np.random.default_rng(0))


# ------------------------------------------------------------------------------------ backgrounds


def test_backgrounds_are_deterministic_cluttered_images():
    a = random_background(48, np.random.default_rng(3))
    b = random_background(48, np.random.default_rng(3))
    c = random_background(48, np.random.default_rng(4))
    assert a.shape == (48, 48, 3) and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.min() >= 0 and a.max() <= 1
    assert a.std() > 0.01  # not a flat colour
    v = value_noise((32, 40), np.random.default_rng(0))
    assert v.shape == (32, 40) and v.min() == 0.0 and v.max() == 1.0


def test_occluder_covers_its_centre_and_only_changes_its_pixels():
    img = np.full((48, 48, 3), 0.5, np.float32)
    out, mask = draw_occluder(img, np.random.default_rng(2), np.array([24.0, 24.0]), 8.0)
    assert mask[24, 24] > 0.5
    assert 0 < (mask > 0.5).mean() < 0.5
    untouched = mask == 0
    assert np.array_equal(out[untouched], img[untouched])
    assert np.all(img == 0.5)  # input not modified


# ------------------------------------------------------------------------------------ scene sampling


def test_random_rotation_is_a_uniform_rotation():
    rng = np.random.default_rng(0)
    Rs = np.stack([synth.random_rotation(rng) for _ in range(2000)])
    np.testing.assert_allclose(Rs @ Rs.transpose(0, 2, 1), np.broadcast_to(np.eye(3), Rs.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(Rs), 1.0, atol=1e-12)
    # Haar measure: E[R] = 0, and the rotated z axis covers both hemispheres evenly
    assert np.abs(Rs.mean(0)).max() < 0.05
    assert abs((Rs[:, 2, 2] > 0).mean() - 0.5) < 0.05


def test_frame_hand_fills_and_centres_the_crop():
    rng = np.random.default_rng(0)
    pts = rng.normal(0, 0.04, (300, 3))
    K = synth.make_K(550.0, 111.5, 112.0)
    T = synth.frame_hand(pts, K, 0.65, np.array([120.0, 100.0]), 224)
    uv = project_np(pts + T, K)
    lo, hi = uv.min(0), uv.max(0)
    assert abs(max(hi - lo) - 0.65 * 224) < 0.5
    np.testing.assert_allclose((lo + hi) / 2, [120.0, 100.0], atol=0.5)


def test_scale_is_the_middle_finger_first_bone():
    j = np.zeros((21, 3))
    j[9] = [0.01, 0.02, 0.5]
    j[10] = [0.01, 0.02 + 0.03, 0.5 + 0.04]
    assert synth.middle_bone_length(j) == pytest.approx(0.05)


def test_sample_rng_depends_on_seed_split_index_only():
    a = synth.sample_rng(3, "training", 7).random(4)
    assert np.array_equal(a, synth.sample_rng(3, "training", 7).random(4))
    assert not np.array_equal(a, synth.sample_rng(3, "evaluation", 7).random(4))
    assert not np.array_equal(a, synth.sample_rng(3, "training", 8).random(4))
    with pytest.raises(ValueError, match="split"):
        synth.sample_rng(0, "val", 0)


def test_skin_albedo_is_skin_coloured_and_lighter_on_the_palm():
    rng = np.random.default_rng(0)
    verts = rng.normal(0, 0.05, (200, 3))
    palm = (verts[:, 1] > 0).astype(float)
    for _ in range(20):
        tone = synth.sample_skin_tone(rng)
        assert tone[0] >= tone[1] >= tone[2] * 0.95  # skin: red >= green >= ~blue
        state = rng.bit_generator.state
        col = synth.skin_albedo(verts, palm, tone, rng)
        rng.bit_generator.state = state
        back = synth.skin_albedo(verts, np.zeros(200), tone, rng)  # same draws, no palm
        assert col.shape == (200, 3) and col.min() >= 0 and col.max() <= 1
        assert np.all(col >= back - 1e-12) and np.array_equal(col[palm == 0], back[palm == 0])
        assert np.abs(col - back).max() > 0  # the palm is actually lighter
        assert abs(back.mean(0) - tone).max() < 0.1  # variation around the base tone


def test_config_hash_and_validation():
    a = synth.SynthConfig(n_train=6, n_eval=3, pose_spread=1)
    b = synth.SynthConfig.from_dict({"n_train": 6.0, "n_eval": 3, "pose_spread": 1.0})
    assert a == b and a.param_hash() == b.param_hash()
    assert synth.SynthConfig.from_dict(a.to_dict()) == a
    assert a.param_hash() != synth.SynthConfig(n_train=6, n_eval=3, seed=1).param_hash()
    assert a.param_hash() != synth.SynthConfig(n_train=6, n_eval=3, noise={"sigma_px": 3.0}).param_hash()
    with pytest.raises(ValueError, match="unknown synthetic-data option"):
        synth.SynthConfig.from_dict({"n_trian": 5})
    with pytest.raises(ValueError, match="fill_range"):
        synth.SynthConfig(fill_range=(0.8, 0.5))
    with pytest.raises(ValueError, match="image_size"):
        synth.SynthConfig(image_size="big")


# ------------------------------------------------------------------------------------ generation

TINY = dict(n_train=6, n_eval=3, seed=11, image_size=64, batch_size=4)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    pytest.importorskip("handrecon.models.hand_model")
    base = tmp_path_factory.mktemp("synth")
    cfg = synth.SynthConfig(**TINY)
    a = synth.generate(base / "a", cfg, workers=1, progress=False)
    b = synth.generate(base / "b", cfg, workers=2, progress=False)
    return cfg, a, b


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_generation_is_deterministic_across_runs_and_workers(generated):
    _, a, b = generated
    fa, fb = _files(a), _files(b)
    assert fa.keys() == fb.keys()
    for k in fa:
        assert fa[k] == fb[k], k
    assert not list(a.parent.glob(".*tmp*"))  # atomic: no temp folder left behind


def test_layout_is_freihands(generated):
    cfg, root, _ = generated
    for split, n in (("training", cfg.n_train), ("evaluation", cfg.n_eval)):
        assert sorted(p.name for p in (root / split / "rgb").iterdir()) == [f"{i:08d}.jpg" for i in range(n)]
        assert sorted(p.name for p in (root / split / "mask").iterdir()) == [f"{i:08d}.jpg" for i in range(n)]
        K = np.array(json.loads((root / f"{split}_K.json").read_text()))
        xyz = np.array(json.loads((root / f"{split}_xyz.json").read_text()))
        verts = np.array(json.loads((root / f"{split}_verts.json").read_text()))
        mano = np.array(json.loads((root / f"{split}_mano.json").read_text()))
        scale = np.array(json.loads((root / f"{split}_scale.json").read_text()))
        assert K.shape == (n, 3, 3) and xyz.shape == (n, 21, 3) and mano.shape == (n, 1, 61)
        assert verts.ndim == 3 and verts.shape[0] == n and verts.shape[2] == 3 and verts.shape[1] > 100
        assert scale.shape == (n,)
        np.testing.assert_allclose(scale, np.linalg.norm(xyz[:, 10] - xyz[:, 9], axis=-1), atol=2e-6)
        np.testing.assert_allclose(K[:, 2], np.broadcast_to([0, 0, 1], (n, 3)))
        assert np.all(xyz[..., 2] > 0.1)  # in front of the camera
        det = Detections.load(
            root / "detections" / f"{split}.json", split=split, dataset="synthetic")
        assert det.names == [f"{i:08d}" for i in range(n)] and det.detector == "synthetic-noise"
    info = json.loads((root / synth.META_FILE).read_text())
    assert info["counts"] == {"training": cfg.n_train, "evaluation": cfg.n_eval}
    assert info["version"] == synth.SYNTH_VERSION and info["seed"] == cfg.seed
    assert synth.is_complete(root, cfg)


def test_hand_is_where_the_annotations_say(generated):
    cfg, root, _ = generated
    from handrecon.data.images import read_mask

    meta = json.loads((root / "meta" / "training.json").read_text())
    K = np.array(json.loads((root / "training_K.json").read_text()))
    xyz = np.array(json.loads((root / "training_xyz.json").read_text()))
    verts = np.array(json.loads((root / "training_verts.json").read_text()))
    det = Detections.load(
        root / "detections" / "training.json")
    S = cfg.image_size
    for i in range(cfg.n_train):
        uv = project_np(xyz[i], K[i])
        palm = uv[[0, 5, 9, 13, 17]]
        assert np.all((palm > -0.5) & (palm < S - 0.5)), i  # wrist and knuckles inside the image
        mask = read_mask(root / "training" / "mask" / f"{i:08d}.jpg") > 0.5
        assert mask.shape == (S, S)
        # the mask lies on the projected mesh
        vuv = np.rint(project_np(verts[i], K[i])).astype(int)
        ok = (vuv >= 0).all(1) & (vuv < S).all(1)
        hull = np.zeros((S, S), bool)
        hull[vuv[ok, 1], vuv[ok, 0]] = True
        assert (mask & hull).sum() > 0.5 * min(mask.sum(), hull.sum()), i
        # the mask covers the palm centre unless an occluder hides it
        c = np.rint(uv[[0, 9]].mean(0)).astype(int)
        if not meta["occluder"][i]:
            assert mask[max(c[1] - 2, 0): c[1] + 3, max(c[0] - 2, 0): c[0] + 3].any(), i
        # detections near the truth for visible, non-outlier joints
        xy, conf = det.get(f"{i:08d}")
        vis = ~np.array(meta["occluded"][i], bool) & ~np.array(meta["outlier"][i], bool) & (conf > 0)
        assert np.median(np.linalg.norm(xy[vis] - uv[vis], axis=-1)) < 3.0


def test_mano_parameters_reproduce_the_vertices(generated):
    cfg, root, _ = generated
    import torch

    from handrecon.models.hand_model import HandModel

    mano = np.array(json.loads((root / "evaluation_mano.json").read_text()))[:, 0]
    verts = np.array(json.loads((root / "evaluation_verts.json").read_text()))
    model = HandModel(use_pca=False, flat_hand_mean=True)
    p = torch.as_tensor(mano, dtype=torch.float32)
    with torch.no_grad():
        out = model(p[:, 3:48], p[:, 48:58], p[:, :3], p[:, 58:61])
    np.testing.assert_allclose(out.verts.numpy(), verts, atol=2e-5)


def test_loads_through_freihand_reader(generated):
    cfg, root, _ = generated
    freihand = pytest.importorskip("handrecon.data.freihand")
    ds = freihand.FreiHANDDataset(root, "training", image_size=cfg.image_size)
    assert len(ds) == cfg.n_train and ds.ann.num_versions == 1
    s = ds[0]
    assert tuple(s["image"].shape[-2:]) == (cfg.image_size, cfg.image_size)
    ev = freihand.FreiHANDDataset(root, "evaluation", image_size=cfg.image_size, require_3d=True)
    assert len(ev) == cfg.n_eval


def test_ensure_synthetic_caches_and_regenerates(generated, tmp_path):
    cfg, src, _ = generated
    import shutil

    root = tmp_path / "cache" / f"synthetic_{cfg.param_hash()}"
    shutil.copytree(src, root)
    stamp = (root / synth.META_FILE).stat().st_mtime_ns
    got = synth.ensure_synthetic(cache_dir=tmp_path / "cache", workers=1, progress=False, **TINY)
    assert got == root and (root / synth.META_FILE).stat().st_mtime_ns == stamp  # reused, not regenerated
    # a set made with other parameters is never replaced: the error names the differing parameter
    info = json.loads((root / synth.META_FILE).read_text())
    info["params"]["seed"] = 999
    (root / synth.META_FILE).write_text(json.dumps(info))
    with pytest.raises(FileExistsError, match=r"other parameters \(seed: 999"):
        synth.ensure_synthetic(root, workers=1, progress=False, **TINY)
    data = {k: v for k, v in _files(root).items() if k != synth.META_FILE}
    assert not synth.is_complete(root, cfg) and data == {k: v for k, v in _files(src).items() if k != synth.META_FILE}
    info["params"]["seed"] = cfg.seed
    (root / synth.META_FILE).write_text(json.dumps(info))
    assert synth.is_complete(root, cfg)
    # data made from another hand model asset (other hash) is stale too
    info = json.loads((root / synth.META_FILE).read_text())
    info["hash"] = "0" * 12
    (root / synth.META_FILE).write_text(json.dumps(info))
    assert not synth.is_complete(root, cfg)
    # a killed generation leaves no record: the folder is not taken as complete
    (root / synth.META_FILE).unlink()
    assert not synth.is_complete(root, cfg)
    # a foreign non-empty folder is never overwritten
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("x")
    with pytest.raises(FileExistsError, match="refusing"):
        synth.ensure_synthetic(foreign, workers=1, progress=False, **TINY)


def test_synthetic_datamodule(generated, tmp_path):
    cfg, src, _ = generated
    pytest.importorskip("handrecon.data.datamodule")
    import shutil

    from omegaconf import OmegaConf

    shutil.copytree(src, tmp_path / f"synthetic_{cfg.param_hash()}")
    conf = OmegaConf.load(Path(__file__).parents[1] / "conf" / "data" / "synthetic.yaml")
    conf.cache_dir = str(tmp_path)
    conf.synthetic = dict(TINY, workers=1)
    conf.image_size = cfg.image_size
    conf.batch_size = 2
    conf.num_workers = 0
    from hydra.utils import instantiate

    dm = instantiate(conf)
    dm.prepare_data()
    assert Path(dm.root) == tmp_path / f"synthetic_{cfg.param_hash()}"
    dm.setup("fit")
    assert len(dm.train_set) == cfg.n_train and len(dm.val_set) == cfg.n_eval
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape[0] == 2
    assert float(batch["kp2d_conf"].max()) > 0  # detections were found


def test_killed_generation_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    pytest.importorskip("handrecon.models.hand_model")
    real = synth._work_chunk
    calls = []

    def dies_on_second_chunk(task):
        calls.append(task[2])
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return real(task)

    monkeypatch.setattr(synth, "_work_chunk", dies_on_second_chunk)
    cfg = synth.SynthConfig(n_train=4, n_eval=1, image_size=32, batch_size=2)
    with pytest.raises(KeyboardInterrupt):
        synth.generate(tmp_path / "data", cfg, workers=1, progress=False)
    assert not (tmp_path / "data").exists()
    assert list(tmp_path.iterdir()) == []  # the temporary folder is gone too


def test_cli_rejects_bad_options(tmp_path):
    with pytest.raises(SystemExit, match="unknown synthetic-data option"):
        synth.main([f"out={tmp_path}", "n_trian=3"])
    with pytest.raises(SystemExit, match="key=value"):
        synth.main(["n_train"])
    with pytest.raises(SystemExit, match="out=DIR"):
        synth.main(["n_train=3"])
