"""Real data and MANO: the data's fingertip convention flows to hand_model=mano (HO3D: 333/444),
FreiHAND / HO3D refuse a hand model without MANO meshes unless told to go on (then warn loudly at
train, evaluate and export time), and a checkpoint trained with a MANO file at one place evaluates /
predicts with the file moved (``hand_model.path=`` on the command line wins)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import hydra
import numpy as np
import pytest
import torch

from conftest import tiny_overrides
from fixtures_mano import make_model, write_official_model
from handrecon.cli import compose_config
from handrecon.cli.realdata import OPT_OUT_KEY, check_mano_for_real_data
from handrecon.models.hand_model import HandModel
from handrecon.models.mano_io import MANO_URL, MANOFileNotFound

FREIHAND_TIPS = [744, 320, 443, 555, 672]  # FreiHAND's ground truth and the S2HAND reference code
HO3D_TIPS = [744, 333, 444, 555, 672]  # HO3D's ground truth (its setup_mano.py patches MANO's lbs.py with these)


@pytest.fixture(scope="module")
def mano_dir(tmp_path_factory) -> Path:
    """A folder with a 778-vertex MANO_RIGHT.pkl in the official files' structure."""
    d = tmp_path_factory.mktemp("mano_A")
    write_official_model(make_model(778, seed=11), d / "MANO_RIGHT.pkl")
    return d


@pytest.mark.parametrize("data, tips", [("freihand", FREIHAND_TIPS), ("ho3d", HO3D_TIPS), ("synthetic", FREIHAND_TIPS)])
def test_mano_fingertips_follow_the_data(mano_dir, tmp_path, data, tips):
    cfg = compose_config([f"data={data}", "data.root=/nowhere", "hand_model=mano", f"hand_model.path={mano_dir}"],
                         tmp_path)
    assert list(cfg.data.mano_tip_vertex_ids) == tips
    assert list(cfg.hand_model.tip_vertex_ids) == tips and list(cfg.model.hand_model.tip_vertex_ids) == tips
    hm = hydra.utils.instantiate(cfg.hand_model)
    assert hm.tip_vertex_ids == tips
    g = torch.Generator().manual_seed(0)
    out = hm(torch.randn(2, hm.pose_dim, generator=g), torch.randn(2, 10, generator=g))
    # the canonical fingertips (thumb, index, middle, ring, little: 4, 8, 12, 16, 20) are those vertices
    assert torch.equal(out.joints[:, [4, 8, 12, 16, 20]], out.verts[:, tips])
    # an explicit choice on the command line still wins
    cfg2 = compose_config([f"data={data}", "data.root=/nowhere", "hand_model=mano", f"hand_model.path={mano_dir}",
                           "hand_model.tip_vertex_ids=[744,317,444,556,673]"], tmp_path)
    assert list(cfg2.model.hand_model.tip_vertex_ids) == [744, 317, 444, 556, 673]


def test_the_datamodule_carries_the_data_facts(tmp_path):
    cfg = compose_config(["data=ho3d", "data.root=/nowhere"], tmp_path)
    dm = hydra.utils.instantiate(cfg.data)
    assert dm.mano_tip_vertex_ids == HO3D_TIPS and dm.mesh_needs_mano is True
    cfg = compose_config(["data=synthetic"], tmp_path)
    assert cfg.data.mesh_needs_mano is False


@pytest.mark.parametrize("data", ["freihand", "ho3d"])
def test_real_data_without_mano_is_a_clear_error_at_train_start(data, tmp_path):
    from handrecon.cli.train import train

    cfg = compose_config(["model=tiny", f"data={data}", "data.root=/nowhere"], tmp_path)  # default: open hand model
    with pytest.raises(ValueError) as err:
        train(cfg)
    msg = str(err.value)
    for part in (f"task=train: data={data} with the open hand model (1544 vertices", MANO_URL,
                 "hand_model=mano hand_model.path=", f"{OPT_OUT_KEY}=true", "skips the mesh error"):
        assert part in msg, part


def test_the_check_passes_mano_and_synthetic_and_warns_when_told_to_go_on(mano_dir, tmp_path, caplog):
    openhand, mano = HandModel(None), HandModel(mano_dir)
    real = compose_config(["data=freihand", "data.root=/nowhere"], tmp_path).data
    synth = compose_config(["data=synthetic"], tmp_path).data
    assert check_mano_for_real_data(real, mano, allow=False, task="train") is True
    assert check_mano_for_real_data(synth, openhand, allow=False, task="train") is True
    with caplog.at_level(logging.WARNING, logger="handrecon"):
        assert check_mano_for_real_data(real, openhand, allow=True, task="train") is False
    assert f"{OPT_OUT_KEY}=true" in caplog.text and "What is lost" in caplog.text and MANO_URL in caplog.text


@pytest.mark.slow
def test_real_data_opt_out_trains_evaluates_and_exports_with_loud_warnings(synth_cache, tmp_path, caplog):
    """data=freihand (the synthetic set in FreiHAND's layout) with the open hand model: refused at
    evaluate without the opt-out; with it, train / evaluate / export run and warn."""
    from handrecon.cli.evaluate import evaluate
    from handrecon.cli.export import export
    from handrecon.cli.train import train

    root = tmp_path / "freihand"
    shutil.copytree(next(Path(synth_cache).glob("synthetic_*")), root)
    run = tmp_path / "run"
    real = ["data=freihand", f"data.root={root}", "data.image_size=64", "data.num_workers=0"]
    tiny = [o for o in tiny_overrides(synth_cache, steps=2) if not o.startswith("data")]
    with caplog.at_level(logging.WARNING, logger="handrecon"):
        train(compose_config([*tiny, *real, f"{OPT_OUT_KEY}=true", "logger=none"], run))
    assert "task=train: data=freihand with the open hand model" in caplog.text and "What is lost" in caplog.text
    caplog.clear()
    ckpt = run / "checkpoints" / "last.ckpt"
    args = [*real, "stage.batch_size=8", "task=evaluate", f"ckpt={ckpt}"]
    with pytest.raises(ValueError, match="task=evaluate: data=freihand with the open hand model"):
        evaluate(compose_config([*args, f"out={tmp_path / 'e0'}"], tmp_path / "e0"))
    with caplog.at_level(logging.WARNING, logger="handrecon"):
        res = evaluate(compose_config([*args, f"{OPT_OUT_KEY}=true", f"out={tmp_path / 'e1'}"], tmp_path / "e1"))
    assert "task=evaluate" in caplog.text and "What is lost" in caplog.text
    assert np.asarray(json.loads(Path(res["pred"]).read_text())[1]).shape[1] == 1544
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="handrecon"):
        export(compose_config(["task=export", f"ckpt={ckpt}", "format=torchscript", f"out={tmp_path / 'x'}"],
                              tmp_path / "x"))
    assert "task=export: this checkpoint was trained on data=freihand with the open hand model" in caplog.text


@pytest.mark.slow
def test_the_command_line_mano_path_wins_over_the_checkpoints(synth_cache, mano_dir, tmp_path):
    from handrecon.cli.evaluate import evaluate
    from handrecon.cli.predict import predict
    from handrecon.cli.train import train

    a = tmp_path / "A"
    shutil.copytree(mano_dir, a)
    run = tmp_path / "run"
    train(compose_config([*tiny_overrides(synth_cache, steps=2), "hand_model=mano", f"hand_model.path={a}",
                          "logger=none"], run))
    ckpt = run / "checkpoints" / "last.ckpt"
    ev = [*tiny_overrides(synth_cache), "task=evaluate", f"ckpt={ckpt}"]
    before = evaluate(compose_config([*ev, f"out={tmp_path / 'e_a'}"], tmp_path / "e_a"))
    b = tmp_path / "B"
    a.rename(b)  # the MANO file moved after training
    with pytest.raises(MANOFileNotFound, match=r"is not where it was at training time; pass `hand_model.path=") as err:
        evaluate(compose_config([*ev, f"out={tmp_path / 'e_x'}"], tmp_path / "e_x"))
    assert str(ckpt) in str(err.value) and f"not found: {a}" in str(err.value)
    after = evaluate(compose_config([*ev, "hand_model=mano", f"hand_model.path={b}", f"out={tmp_path / 'e_b'}"],
                                    tmp_path / "e_b"))
    assert Path(after["pred"]).read_text() == Path(before["pred"]).read_text()
    assert np.asarray(json.loads(Path(after["pred"]).read_text())[1]).shape[1:] == (778, 3)
    # the path alone (without hand_model=mano) is enough, and predict takes it too
    out = tmp_path / "pred"
    rep = predict(compose_config(["task=predict", f"ckpt={ckpt}", "input=synthetic:evaluation:2",
                                  f"hand_model.path={b}", f"out={out}"], out))
    assert len(rep["written"]) == 2
    objs = sorted(out.glob("*.obj"))
    assert len(objs) == 2 and sum(line.startswith("v ") for line in objs[0].read_text().splitlines()) == 778


def test_evaluation_on_ho3d_takes_ho3d_tips_unless_chosen_at_training(mano_dir, tmp_path):
    from handrecon.cli.evaluate import tips_of_the_evaluation_data

    ho3d = compose_config(["data=ho3d", "data.root=/nowhere"], tmp_path).data
    trained = compose_config(["data=synthetic", "hand_model=mano", f"hand_model.path={mano_dir}"], tmp_path)
    hm = hydra.utils.instantiate(trained.hand_model)  # trained on FreiHAND's convention
    assert hm.tip_vertex_ids == FREIHAND_TIPS
    assert tips_of_the_evaluation_data(hm, trained, ho3d) == HO3D_TIPS and hm.tip_vertex_ids == HO3D_TIPS
    out = hm(torch.zeros(1, hm.pose_dim), torch.zeros(1, 10))
    assert torch.equal(out.joints[:, [4, 8, 12, 16, 20]], out.verts[:, HO3D_TIPS])
    assert tips_of_the_evaluation_data(hm, trained, ho3d) is None  # already there
    # tips chosen explicitly at training stay; the open hand model has its own
    chosen = compose_config(["data=synthetic", "hand_model=mano", f"hand_model.path={mano_dir}",
                             "hand_model.tip_vertex_ids=[744,317,444,556,673]"], tmp_path)
    hm2 = hydra.utils.instantiate(chosen.hand_model)
    assert tips_of_the_evaluation_data(hm2, chosen, ho3d) is None and hm2.tip_vertex_ids == [744, 317, 444, 556, 673]
    assert tips_of_the_evaluation_data(HandModel(None), compose_config([], tmp_path), ho3d) is None
