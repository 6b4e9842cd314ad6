"""The hand regressor's 2D-keypoint input (model.keypoints_in, handrecon.models.network)."""

from __future__ import annotations

import hydra
import pytest
import torch

from handrecon.cli import compose_config
from handrecon.geometry import camera


def _net(tmp_path, *over):
    cfg = compose_config(["model=tiny", *over], tmp_path)
    torch.manual_seed(0)
    return hydra.utils.instantiate(cfg.model).eval()


def _inputs(B=3, S=64):
    g = torch.Generator().manual_seed(1)
    K = torch.from_numpy(camera.crop_intrinsics(S)).float().expand(B, 3, 3).contiguous()
    return torch.rand(B, 3, S, S, generator=g), K


def _keypoint_net(tmp_path):
    net = _net(tmp_path, "model.keypoints_in=detections")
    for p in net.regressor.parameters():  # non-zero heads, so that the input shows in the output
        if p.dim() > 1:
            torch.nn.init.normal_(p, std=0.05)
    return net


def test_keypoint_input_reads_the_given_keypoints_or_the_2d_branch(tmp_path):
    net = _keypoint_net(tmp_path)
    image, K = _inputs()
    g = torch.Generator().manual_seed(2)
    uv, conf = torch.rand(3, 21, 2, generator=g) * 64, torch.rand(3, 21, generator=g)
    with torch.no_grad():
        a = net(image, K, with_appearance=False, with_kp_branch=False, keypoints=(uv, conf))
        b = net(image, K, with_appearance=False, with_kp_branch=False, keypoints=(uv + 5.0, conf))
        c = net(image, K, with_appearance=False, with_kp_branch=False)  # no detections: the 2D branch
        d = net(image, K, with_appearance=False, with_kp_branch=False, keypoints=net.predict_keypoints(image))
    assert not torch.allclose(a.pose, b.pose)
    assert torch.allclose(c.pose, d.pose, atol=1e-6) and torch.allclose(c.transl, d.transl, atol=1e-6)
    # in [-1, 1] crop units: pixel centres 0 and S-1 map to -1 + 1/S and 1 - 1/S
    x = net.regressor_keypoints(image, (torch.tensor([[[0.0, 63.0]] * 21] * 3), torch.ones(3, 21)))
    assert torch.allclose(x[0, 0], torch.tensor([-1 + 1 / 64, 1 - 1 / 64, 1.0]))


def test_keypoint_input_bad_settings_are_clear_errors(tmp_path):
    from hydra.errors import InstantiationException  # hydra wraps the network's ValueError, message kept

    with pytest.raises(InstantiationException, match="model.keypoints_in='heatmaps': expected one of"):
        _net(tmp_path, "model.keypoints_in=heatmaps")
    with pytest.raises(InstantiationException, match="keypoints_in=branch needs the 2D keypoint branch"):
        _net(tmp_path, "model.keypoints_in=branch", "model.use_kp_branch=false")
    net = _net(tmp_path, "model.keypoints_in=detections", "model.use_kp_branch=false")
    with pytest.raises(ValueError, match="no 2D keypoints were given"):
        net(*_inputs(), with_kp_branch=False)


def test_images_without_detections_get_the_2d_branch_keypoints(tmp_path):
    net = _keypoint_net(tmp_path)
    image, K = _inputs()
    g = torch.Generator().manual_seed(4)
    uv, conf = torch.rand(3, 21, 2, generator=g) * 64, 0.5 + 0.5 * torch.rand(3, 21, generator=g)
    conf[1] = 0.0  # the detector found no hand in image 1
    with torch.no_grad():
        got = net(image, K, with_appearance=False, with_kp_branch=False, keypoints=(uv, conf))
        b_uv, b_conf = net.predict_keypoints(image)
        uv_ref, conf_ref = uv.clone(), conf.clone()
        uv_ref[1], conf_ref[1] = b_uv[1], b_conf[1]
        ref = net(image, K, with_appearance=False, with_kp_branch=False, keypoints=(uv_ref, conf_ref))
    assert torch.allclose(got.pose, ref.pose, atol=1e-6) and torch.allclose(got.transl, ref.transl, atol=1e-6)


def test_model_config_sets_every_network_argument_with_the_class_defaults():
    """conf/model/s2hand.yaml names every HandReconNet argument (so each is a command-line override),
    with the class's default where the config does not deliberately differ."""
    import inspect
    from pathlib import Path

    from omegaconf import OmegaConf

    from handrecon.models.network import HandReconNet

    conf = OmegaConf.load(Path(__file__).parents[1] / "conf" / "model" / "s2hand.yaml")
    params = inspect.signature(HandReconNet.__init__).parameters
    assert set(params) - {"self"} == set(conf) - {"_target_"}
    for name in ("rot_repr", "z_init", "scale_init", "mean_shape", "center_joint", "use_appearance", "use_kp_branch",
                 "keypoints_in", "keypoint_features"):
        assert conf[name] == params[name].default, name
