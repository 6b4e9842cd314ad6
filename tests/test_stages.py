"""The four training stages, stage chaining, and the learning signal, on the tiny synthetic data."""

from __future__ import annotations

import hydra
import pytest
import pytorch_lightning as pl
import torch

from conftest import tiny_overrides
from handrecon.cli import compose_config
from handrecon.cli.train import build_module, train
from handrecon.models.network import PARTS


@pytest.mark.parametrize("stage", ["ssl_shape", "ssl_kp", "ssl_finetune", "ssl_e2e"])
def test_stage_trains_only_its_parts(stage, synth_cache, tmp_path):
    cfg = compose_config([*tiny_overrides(synth_cache, steps=2), f"stage={stage}"], tmp_path)
    pl.seed_everything(int(cfg.seed))  # as train() does, so both build the same initial weights
    hydra.utils.instantiate(cfg.data)
    module = build_module(cfg)
    before = {k: v.clone() for k, v in module.net.state_dict().items() if v.dtype.is_floating_point}
    summary = train(cfg)
    assert summary["global_step"] == 2
    after = summary_state(tmp_path)
    trained = set(cfg.stage.train_parts)
    for part in PARTS:
        keys = [k for k in before if k.startswith(part + ".") and "running" not in k and "num_batches" not in k]
        changed = any(not torch.equal(before[k], after["net." + k]) for k in keys)
        assert changed == (part in trained), f"{stage}: part {part} changed={changed}, trains={part in trained}"
    # the hand model is data, never trained
    assert all(torch.equal(before[k], after["net." + k]) for k in before if k.startswith("hand_model."))
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "config_resolved.yaml").is_file()


def summary_state(out_dir):
    ck = torch.load(out_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    return ck["state_dict"]


def test_chain_passes_weights_on(synth_cache, tmp_path):
    """ssl_shape -> ssl_kp: the second stage starts from the first's checkpoint and keeps its frozen parts."""
    a = tmp_path / "shape"
    train(compose_config([*tiny_overrides(synth_cache, steps=2), "stage=ssl_shape"], a))
    shape_sd = summary_state(a)
    b = tmp_path / "kp"
    cfg = compose_config([*tiny_overrides(synth_cache, steps=2), "stage=ssl_kp", f"init_from={a / 'checkpoints' / 'last.ckpt'}"], b)
    train(cfg)
    kp_sd = summary_state(b)
    enc = [k for k in shape_sd if k.startswith("net.encoder.") and shape_sd[k].dtype.is_floating_point]
    assert enc and all(torch.equal(shape_sd[k], kp_sd[k]) for k in enc), "frozen encoder must carry the ssl_shape weights"
    kpb = [k for k in kp_sd if k.startswith("net.kp_branch.") and k.endswith("weight")]
    assert any(not torch.equal(shape_sd[k], kp_sd[k]) for k in kpb), "ssl_kp must train the 2D branch"


def test_init_from_missing_checkpoint_is_a_clear_error(synth_cache, tmp_path):
    cfg = compose_config([*tiny_overrides(synth_cache), "init_from=/nope/best.ckpt"], tmp_path)
    with pytest.raises(FileNotFoundError, match="init_from: checkpoint not found: /nope/best.ckpt"):
        train(cfg)


def test_nonfinite_loss_raise_names_the_term_and_skip_skips(synth_cache, tmp_path):
    from handrecon.losses.objective import NonFiniteLossError

    cfg = compose_config([*tiny_overrides(synth_cache), "stage=ssl_shape"], tmp_path)
    module = build_module(cfg)
    dm = hydra.utils.instantiate(cfg.data)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    batch["kp2d"][0, 3, 0] = float("nan")  # a NaN detection with full confidence
    batch["kp2d_conf"][0, 3] = 1.0
    with pytest.raises(NonFiniteLossError, match="kp2d"):
        module.training_step(batch, 0)
    module.objective.nonfinite = "skip"
    assert module.training_step(batch, 0) is None


def _short_run(tmp_path, overrides: list[str]):
    """A very short ssl_shape run; -> (untrained and trained validation numbers, loss curve)."""
    from handrecon.eval.metrics import evaluate_arrays
    from handrecon.geometry.camera import project

    cfg = compose_config([*overrides, "stage=ssl_shape", "trainer.check_val_every_n_epoch=1000"], tmp_path)
    torch.manual_seed(0)
    dm = hydra.utils.instantiate(cfg.data)
    dm.setup("fit")
    val = list(dm.val_dataloader())

    def evaluate(m):
        m.eval()
        with torch.no_grad():  # as validation does: with the images' detections where the model reads them
            outs = [m.run_net(b, with_appearance=False, with_kp_branch=False) for b in val]
        err2d = torch.cat([(o.kp2d_proj - project(b["joints3d"], b["K"])).norm(dim=-1).mean(-1) for o, b in zip(outs, val)])
        pj = torch.cat([o.joints for o in outs]).numpy()
        gj = torch.cat([b["joints3d"] for b in val]).numpy()
        return {"pa_mpjpe_mm": evaluate_arrays(pj, gj)["pa_mpjpe_mm"], "reproj_px": float(err2d.mean())}

    untrained = evaluate(build_module(cfg))
    train(cfg)
    trained_module = build_module(cfg)
    trained_module.load_state_dict(summary_state(tmp_path))
    trained = evaluate(trained_module)
    import csv

    rows = [r for r in csv.DictReader(open(tmp_path / "csv" / "metrics.csv")) if r.get("train/loss_step")]
    losses = {k[len("train/"):-len("_step")]: [float(r[k]) for r in rows if r.get(k)]
              for k in rows[0] if k.startswith("train/") and k.endswith("_step")}
    return untrained, trained, losses


@pytest.fixture(scope="module")
def short_run(synth_cache, tmp_path_factory):
    """Image-only (the method's network), 150 steps on the tiny data (views over the whole sphere)."""
    over = [*tiny_overrides(synth_cache, steps=150, batch=16), "stage.optimizer.lr=3e-3"]
    return _short_run(tmp_path_factory.mktemp("short_run"), over)


#: the lifting run's data: the quickstart's view cone (palm/back views within 45 degrees), rendered
#: at 128 px (the detector noise is in render pixels) and trained at 64 px; 1000 images, 64 held out
LIFTING_DATA = ["data.synthetic.n_train=1000", "data.synthetic.n_eval=64", "data.synthetic.view_cone_deg=45",
                "data.synthetic.image_size=128", "data.synthetic.workers=2", "trainer.limit_val_batches=null",
                "data.val_batch_size=64", "data.train_dataset.augment.rotation_deg=0"]


@pytest.fixture(scope="module")
def lifting_run(tmp_path_factory):
    """The quickstart's model (the regressor also reads the 2D detections), 400 steps."""
    cache = tmp_path_factory.mktemp("lifting_cache")
    over = [*tiny_overrides(cache, steps=400, batch=32), *LIFTING_DATA, "model.keypoints_in=detections"]
    return _short_run(tmp_path_factory.mktemp("lifting_run"), over)


@pytest.mark.slow  # 60-400 training steps
@pytest.mark.parametrize("run", ["short_run", "lifting_run"])
def test_short_run_loss_falls_and_2d_fit_improves(run, request):
    """The training loss and its 2D detection term (open_2dj) fall and the projected 3D joints of
    held-out images move towards their true 2D positions (the self-supervised signal is learned, not
    memorised). With the reference's weights the image-only run's loss is mostly the bone-direction
    term, which a tiny network lowers slowly (measured: total -12 %, kp2d -15 % in 150 steps)."""
    untrained, trained, losses = request.getfixturevalue(run)
    for term, factor in (("loss", 0.95), ("kp2d", 0.9)):
        first, last = sum(losses[term][:10]) / 10, sum(losses[term][-10:]) / 10
        assert last < factor * first, f"training {term} did not fall: {first:.4f} -> {last:.4f}"
    assert trained["reproj_px"] < 0.9 * untrained["reproj_px"], (untrained, trained)


@pytest.mark.slow  # 60-400 training steps
def test_lifting_run_beats_the_untrained_network_in_pa_mpjpe(lifting_run):
    """400 CPU steps of the quickstart's model clearly beat the untrained network, which predicts the
    mean pose (PA-MPJPE ignores the global rotation, so the gain is the articulation)."""
    untrained, trained, _ = lifting_run
    assert trained["pa_mpjpe_mm"] < 0.9 * untrained["pa_mpjpe_mm"], (untrained, trained)


@pytest.mark.slow  # 60-400 training steps
@pytest.mark.xfail(strict=True, reason="known limit: an image-only regressor fits 2D keypoints in a minutes-long CPU "
                   "run but does not learn the articulation (the quickstart reads the detections for this reason); "
                   "strict: passing means this mark must go")
def test_short_image_only_run_beats_untrained_pa_mpjpe(short_run):
    untrained, trained, _ = short_run
    assert trained["pa_mpjpe_mm"] < untrained["pa_mpjpe_mm"], (untrained, trained)


def test_nonfinite_gradient_is_never_stepped_on(synth_cache, tmp_path):
    cfg = compose_config([*tiny_overrides(synth_cache), "stage=ssl_shape"], tmp_path)
    module = build_module(cfg)
    p = next(module.net.regressor.parameters())
    p.grad = torch.full_like(p, float("nan"))
    with pytest.raises(FloatingPointError, match="non-finite gradient in 1 parameters"):
        module.on_before_optimizer_step(None)
    module.objective.nonfinite = "skip"
    module.on_before_optimizer_step(None)
    assert p.grad is None


@pytest.mark.parametrize("stage,lr,milestones", [("ssl_shape", 1e-3, [30, 60, 90]), ("ssl_kp", 1e-3, [30, 60, 90]),
                                                 ("ssl_finetune", 2.5e-4, [20, 40]),
                                                 ("ssl_e2e", 1e-3, [30, 60, 90, 120, 150])])
def test_optimizer_and_schedule_are_the_methods_per_stage(stage, lr, milestones, tmp_path):
    """stage.optimizer / stage.lr_scheduler (_partial_ config nodes) build the method's Adam and its
    MultiStepLR halving per epoch; the learning rate after each milestone epoch is half the one before."""
    cfg = compose_config([f"stage={stage}", "model=tiny"], tmp_path)
    module = build_module(cfg)
    conf = module.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert type(opt) is torch.optim.Adam and conf["lr_scheduler"]["interval"] == "epoch"
    assert opt.param_groups[0]["lr"] == lr and opt.param_groups[0]["weight_decay"] == 0.0
    trainable = {id(p) for p in module.parameters() if p.requires_grad}
    assert {id(p) for g in opt.param_groups for p in g["params"]} == trainable
    lrs = []
    for _ in range(milestones[-1] + 1):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == lr and lrs[-1] == pytest.approx(lr * 0.5 ** len(milestones))
    drops = [e for e in range(1, len(lrs)) if lrs[e] != lrs[e - 1]]
    assert drops == milestones and all(lrs[e] == pytest.approx(lrs[e - 1] / 2) for e in drops)


def test_optimizer_is_a_config_choice(tmp_path):
    cfg = compose_config(["stage=ssl_shape", "model=tiny", "stage.optimizer._target_=torch.optim.SGD",
                          "stage.optimizer.lr=0.01", "+stage.optimizer.momentum=0.9", "stage.lr_scheduler=null"], tmp_path)
    opt = build_module(cfg).configure_optimizers()
    assert type(opt) is torch.optim.SGD and opt.param_groups[0]["momentum"] == 0.9
