"""S2HAND's published models in handrecon: model=s2hand_reference and ``python -m handrecon.convert s2hand``.

The .t7 file of these tests is written here with the reference code's keys and shapes (read from
its examples/models_new.py, utils/freihandnet.py, utils/net_hg.py and the EfficientNet-B3 of
efficientnet_pytorch) and random values; the expected outputs come from a forward pass of the
reference's heads and MANO layer written here independently of handrecon (plain tensor operations
on the file's weights), the encoder from efficientnet_pytorch itself.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from fixtures_mano import make_model, write_official_model
from handrecon.convert import ConversionError, convert_s2hand, efficientnet_pytorch_to_timm, main, map_state

N_FACES = 1538


def _efficientnet_pytorch_b3():
    from efficientnet_pytorch import EfficientNet

    # image_size=None: TensorFlow "same" padding computed per input. The reference's vendored copy
    # (efficientnet_pt 0.5.1) pads every convolution as for a 300 px input, which at 224 px (every
    # stride-2 convolution sees an even size) is the same padding.
    return EfficientNet.from_name("efficientnet-b3", image_size=None)


def _randomise_bn(model: torch.nn.Module, g: torch.Generator) -> None:
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
            n = m.num_features
            m.weight.data = 0.8 + 0.4 * torch.rand(n, generator=g)
            m.bias.data = 0.1 * torch.randn(n, generator=g)
            m.running_mean.data = 0.1 * torch.randn(n, generator=g)
            m.running_var.data = 0.6 + 0.8 * torch.rand(n, generator=g)


def test_encoder_matches_efficientnet_pytorch():
    """Same random weights: handrecon's tf_efficientnet_b3 encoder gives efficientnet_pytorch's 1536-d
    feature (its head map averaged: at 224 px the reference's 7 x 7 pool) and its block-4 output."""
    from handrecon.models.encoder import Encoder

    g = torch.Generator().manual_seed(0)
    ref = _efficientnet_pytorch_b3()
    _randomise_bn(ref, g)
    ref.eval()
    enc = Encoder("tf_efficientnet_b3", normalize="none").eval()
    enc.backbone.load_state_dict(efficientnet_pytorch_to_timm(ref.state_dict(), enc.backbone), strict=True)
    x = torch.rand(2, 3, 96, 96, generator=g)
    low = {}
    hook = ref._blocks[4].register_forward_hook(lambda m, i, o: low.__setitem__("map", o))
    with torch.no_grad():
        final = ref.extract_features(x)
        hook.remove()
        glob, ours_low = enc(x)
    want = final.mean((2, 3))
    assert glob.shape == (2, 1536) and ours_low.shape == low["map"].shape == (2, 32, 24, 24)
    assert float(want.abs().max()) > 1e-2 and float(low["map"].abs().max()) > 1e-2  # not a trivial all-zero match
    assert float((glob - want).abs().max()) < 1e-4
    assert float((ours_low - low["map"]).abs().max()) < 1e-4


# ----------------------------------------------------------------------------------------------
# the reference's parts, keys and shapes (written from its source, not from handrecon's modules)

def _bn(prefix: str, n: int) -> dict:
    return {f"{prefix}.weight": (n,), f"{prefix}.bias": (n,), f"{prefix}.running_mean": (n,),
            f"{prefix}.running_var": (n,), f"{prefix}.num_batches_tracked": ()}


def _conv(prefix: str, cout: int, cin: int, k: int) -> dict:
    return {f"{prefix}.weight": (cout, cin, k, k), f"{prefix}.bias": (cout,)}


def _lin(prefix: str, cout: int, cin: int) -> dict:
    return {f"{prefix}.weight": (cout, cin), f"{prefix}.bias": (cout,)}


def _residual(p: str, cin: int, cout: int) -> dict:  # net_hg.Residual
    d = {**_bn(f"{p}.bn", cin), **_conv(f"{p}.conv1", cout // 2, cin, 1), **_bn(f"{p}.bn1", cout // 2),
         **_conv(f"{p}.conv2", cout // 2, cout // 2, 3), **_bn(f"{p}.bn2", cout // 2),
         **_conv(f"{p}.conv3", cout, cout // 2, 1)}
    if cin != cout:
        d.update(_conv(f"{p}.conv4", cout, cin, 1))
    return d


def _hourglass(p: str, n: int, f: int = 256, nm: int = 2) -> dict:  # net_hg.Hourglass
    d = {}
    for name in ("up1_", "low1_", "low3_") + (() if n > 1 else ("low2_",)):
        for j in range(nm):
            d.update(_residual(f"{p}.{name}.{j}", f, f))
    if n > 1:
        d.update(_hourglass(f"{p}.low2", n - 1, f, nm))
    return d


def reference_shapes() -> dict[str, dict[str, tuple]]:
    rgb2hm = {**_conv("net_hm.conv1_", 64, 3, 7), **_bn("net_hm.bn1", 64), **_residual("net_hm.r1", 64, 128),
              **_residual("net_hm.r4", 128, 128), **_residual("net_hm.r5", 128, 256)}
    for i in range(2):
        rgb2hm.update(_hourglass(f"net_hm.hourglass.{i}", 4))
        for j in range(2):
            rgb2hm.update(_residual(f"net_hm.Residual.{i * 2 + j}", 256, 256))
        rgb2hm.update({**_conv(f"net_hm.lin_.{i}.0", 256, 256, 1), **_bn(f"net_hm.lin_.{i}.1", 256),
                       **_conv(f"net_hm.tmpOut.{i}", 21, 256, 1)})
    rgb2hm.update({**_conv("net_hm.ll_.0", 256, 256, 1), **_conv("net_hm.tmpOut_.0", 256, 21, 1)})
    h = "hand_decode"
    decoder = {**_lin(f"{h}.base_layers.0", 1024, 1536), **_bn(f"{h}.base_layers.1", 1024),
               **_lin(f"{h}.base_layers.3", 512, 1024), **_bn(f"{h}.base_layers.4", 512),
               **_lin(f"{h}.pose_reg.0", 128, 512), **_lin(f"{h}.pose_reg.2", 30, 128),
               **_lin(f"{h}.shape_reg.0", 128, 512), **_lin(f"{h}.shape_reg.2", 10, 128)}
    for name, out in (("trans_reg", 3), ("rot_reg", 3), ("scale_reg", 1)):
        decoder.update({**_lin(f"{h}.{name}.0", 128, 512), **_lin(f"{h}.{name}.2", 32, 128),
                        **_lin(f"{h}.{name}.3", out, 32)})
    texture = {**_conv("base_layers.0", 48, 32, 10), **_conv("base_layers.3", 64, 48, 3),
               **_lin("texture_reg.0", 64, 256), **_lin("texture_reg.2", N_FACES * 3, 64),
               **_lin("light_reg.0", 64, 256), **_lin("light_reg.2", 11, 64)}
    return {"decoder": decoder, "rgb2hm": rgb2hm, "texture_light_from_low": texture}


def _random_part(shapes: dict, g: torch.Generator) -> dict:
    out = {}
    for k, shape in shapes.items():
        leaf = k.rsplit(".", 1)[-1]
        if leaf == "num_batches_tracked":
            out[k] = torch.tensor(7)
        elif leaf == "running_var":
            out[k] = 0.6 + 0.8 * torch.rand(shape, generator=g)
        elif leaf == "running_mean":
            out[k] = 0.05 * torch.randn(shape, generator=g)
        elif leaf == "weight" and len(shape) == 1:  # batch-norm scale
            out[k] = 0.8 + 0.4 * torch.rand(shape, generator=g)
        else:
            fan_in = max(1, math.prod(shape[1:])) if len(shape) > 1 else 1
            out[k] = torch.randn(shape, generator=g) / math.sqrt(fan_in) * (0.05 if len(shape) == 1 else 1.0)
    return out


def write_reference_t7(path: Path, seed: int = 0, use_mean_shape: bool = False, edit=None) -> dict:
    g = torch.Generator().manual_seed(seed)
    enc = _efficientnet_pytorch_b3()
    _randomise_bn(enc, g)
    parts = {k: _random_part(v, g) for k, v in reference_shapes().items()}
    # smaller head outputs, so that the hand stays a hand (rotation, scale, translation of sane size)
    for name, std in (("pose_reg", 0.5), ("rot_reg", 0.5), ("trans_reg", 0.05), ("scale_reg", 0.05)):
        last = "2" if name == "pose_reg" else "3"
        parts["decoder"][f"hand_decode.{name}.{last}.weight"] *= std
    parts["decoder"]["hand_decode.trans_reg.3.bias"] = torch.tensor([0.01, -0.02, 0.65])
    parts["decoder"]["hand_decode.scale_reg.3.bias"] = torch.tensor([-0.95])  # |s| is used
    parts["decoder"]["hand_decode.rot_reg.3.bias"] = torch.tensor([0.4, -1.1, 0.7])
    data = {
        "args": argparse.Namespace(regress_mode="mano", use_mean_shape=use_mean_shape, use_2d_as_attention=False,
                                   image_size=224, train_datasets=["FreiHand"], texture_mode="surf",
                                   train_requires=["heatmaps", "joints", "verts", "textures", "lights"]),
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.001, "params": [0, 1, 2]}]},
        "epoch": 180,
        "encoder": {f"encoder.{k}": v for k, v in enc.state_dict().items()},
        **parts,
    }
    if edit:
        edit(data)
    torch.save(data, path)
    return data


@pytest.fixture(scope="module")
def mano_dir(tmp_path_factory) -> Path:
    d = make_model(778, seed=3)
    rng = np.random.default_rng(0)
    extra = rng.integers(96, 778, (N_FACES - len(d["f"]), 3)).astype(d["f"].dtype)
    d["f"] = np.concatenate([d["f"], extra])  # MANO's face count, for the texture head's shape
    folder = tmp_path_factory.mktemp("mano")
    write_official_model(d, folder / "MANO_RIGHT.pkl")
    return folder


@pytest.fixture(scope="module")
def converted(tmp_path_factory, mano_dir):
    tmp = tmp_path_factory.mktemp("s2hand")
    t7 = tmp / "texturehand_test.t7"
    data = write_reference_t7(t7)
    summary = convert_s2hand(t7, tmp / "s2hand.ckpt", [f"hand_model.path={mano_dir}"])
    return t7, tmp / "s2hand.ckpt", data, summary


@pytest.fixture(scope="module")
def loaded(converted):
    """The converted checkpoint loaded as any handrecon checkpoint: (module, its config)."""
    from handrecon.cli.checkpoint import load_module

    return load_module(converted[1])


# ----------------------------------------------------------------------------------------------
# an independent forward pass of the reference's heads and MANO layer

def _lin_f(x, sd, p):
    return F.linear(x, sd[f"{p}.weight"], sd[f"{p}.bias"])


def _bn_f(x, sd, p, eps=1e-5):
    return F.batch_norm(x, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"],
                        False, 0.0, eps)


def reference_decoder(feat, sd, use_mean_shape):
    h = "hand_decode"
    x = F.relu(_bn_f(_lin_f(feat, sd, f"{h}.base_layers.0"), sd, f"{h}.base_layers.1"))
    x = F.relu(_bn_f(_lin_f(x, sd, f"{h}.base_layers.3"), sd, f"{h}.base_layers.4"))

    def head(name, small):
        y = _lin_f(F.relu(_lin_f(x, sd, f"{h}.{name}.0")), sd, f"{h}.{name}.2")
        return _lin_f(y, sd, f"{h}.{name}.3") if small else y

    theta, beta = head("pose_reg", False), head("shape_reg", False)
    if use_mean_shape:
        beta = torch.zeros_like(beta)
    return theta, beta, head("scale_reg", True), head("trans_reg", True), head("rot_reg", True)


def _rodrigues(r):  # (N, 3) -> (N, 3, 3)
    theta = r.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    k = r / theta
    Kx = torch.zeros(r.shape[0], 3, 3, dtype=r.dtype)
    Kx[:, 0, 1], Kx[:, 0, 2], Kx[:, 1, 0] = -k[:, 2], k[:, 1], k[:, 2]
    Kx[:, 1, 2], Kx[:, 2, 0], Kx[:, 2, 1] = -k[:, 0], -k[:, 1], k[:, 0]
    s, c = torch.sin(theta)[..., None], torch.cos(theta)[..., None]
    return torch.eye(3, dtype=r.dtype) + s * Kx + (1 - c) * Kx @ Kx


def reference_mano(mano: dict, rot, theta, beta):
    """The reference's rot_pose_beta_to_mesh: (B, 21 + 778, 3) in its joint order + tips, MANO frame."""
    f64 = torch.float64
    B = rot.shape[0]
    v_t = torch.tensor(mano["v_template"], dtype=f64)
    sd = torch.tensor(mano["shapedirs"], dtype=f64)
    pd = torch.tensor(mano["posedirs"], dtype=f64)
    reg = mano["J_regressor"]
    reg = torch.tensor(reg.toarray() if hasattr(reg, "toarray") else np.asarray(reg), dtype=f64)
    w = torch.tensor(mano["weights"], dtype=f64)
    comps = torch.tensor(mano["hands_components"][:30], dtype=f64)
    mean = torch.tensor(mano["hands_mean"], dtype=f64)
    kin = np.asarray(mano["kintree_table"])
    col = {int(kin[1, i]): i for i in range(kin.shape[1])}
    parent = {i: col[int(kin[0, i])] for i in range(1, kin.shape[1])}
    poses = torch.cat([torch.tensor([[math.pi, 0.0, 0.0]], dtype=f64).expand(B, 3),
                       mean + theta.to(f64) @ comps], 1).view(B, 16, 3)
    v_shaped = v_t + torch.einsum("vck,bk->bvc", sd, beta.to(f64))
    R = _rodrigues(poses.reshape(-1, 3)).view(B, 16, 3, 3)
    feat = (R[:, 1:] - torch.eye(3, dtype=f64)).reshape(B, 135)
    v_posed = v_shaped + torch.einsum("vck,bk->bvc", pd, feat)
    J = torch.einsum("jv,bvc->bjc", reg, v_shaped)
    G = [None] * 16
    for i in range(16):
        local = torch.eye(4, dtype=f64).repeat(B, 1, 1)
        local[:, :3, :3] = R[:, i]
        local[:, :3, 3] = J[:, i] - (J[:, parent[i]] if i else 0.0)
        G[i] = local if i == 0 else G[parent[i]] @ local
    G = torch.stack(G, 1)  # (B, 16, 4, 4) world transforms of the joints
    joints = G[:, :, :3, 3]
    A = G.clone()
    A[:, :, :3, 3] -= torch.einsum("bjcd,bjd->bjc", G[:, :, :3, :3], J)  # relative to the rest pose
    T = torch.einsum("vj,bjcd->bvcd", w, A)
    v = torch.einsum("bvcd,bvd->bvc", T[:, :, :3, :3], v_posed) + T[:, :, :3, 3]
    Jtr = list(joints.unbind(1))
    for pos, vid in ((4, 320), (8, 443), (12, 672), (16, 555), (20, 744)):
        Jtr.insert(pos, v[:, vid])
    Jtr = torch.stack(Jtr, 1)
    Rg = _rodrigues(rot.to(f64))
    return Jtr @ Rg.transpose(1, 2), v @ Rg.transpose(1, 2)


#: the reference's joint order (wrist; index, middle, little, ring, thumb: 3 joints + tip each) -> FreiHAND's
REFERENCE_TO_FREIHAND = [0, 17, 18, 19, 20, 1, 2, 3, 4, 5, 6, 7, 8, 13, 14, 15, 16, 9, 10, 11, 12]


def reference_texture_light(low, sd):
    x = F.max_pool2d(F.relu(F.conv2d(low, sd["base_layers.0.weight"], sd["base_layers.0.bias"], stride=4, padding=1)),
                     3, 2)
    x = F.max_pool2d(F.relu(F.conv2d(x, sd["base_layers.3.weight"], sd["base_layers.3.bias"])), 2, 2).flatten(1)
    tex = torch.tensor([200 / 256, 150 / 256, 150 / 256]) + _lin_f(F.relu(_lin_f(x, sd, "texture_reg.0")), sd,
                                                                    "texture_reg.2").view(-1, N_FACES, 3)
    return torch.tanh(tex), _lin_f(F.relu(_lin_f(x, sd, "light_reg.0")), sd, "light_reg.2")


def test_converted_model_gives_the_reference_forward(converted, loaded, mano_dir):
    """The converted checkpoint, loaded as any handrecon checkpoint, gives the same MANO parameters,
    joints, vertices, texture and lighting as the reference's network on the same image."""
    from handrecon.models.mano_io import load_mano_pickle

    t7, ckpt, data, summary = converted
    assert summary["dropped"] == ["encoder/encoder._fc.weight", "encoder/encoder._fc.bias"]
    torch.load(ckpt, map_location="cpu", weights_only=True)  # the converted file holds no code either
    module, cfg = loaded
    assert cfg.model.placement == "reference" and cfg.model.mean_shape is False
    net = module.net
    g = torch.Generator().manual_seed(5)
    image = torch.rand(2, 3, 224, 224, generator=g)
    K = torch.tensor([[480.0, 0, 112], [0, 480.0, 112], [0, 0, 1]]).expand(2, 3, 3)
    with torch.no_grad():
        out = net(image, K, with_kp_branch=False)
        ref_enc = _efficientnet_pytorch_b3()
        ref_enc.load_state_dict({k[len("encoder."):]: v for k, v in data["encoder"].items()})
        ref_enc.eval()
        low = {}
        hook = ref_enc._blocks[4].register_forward_hook(lambda m, i, o: low.__setitem__("map", o))
        feat = F.avg_pool2d(ref_enc.extract_features(image), 7, stride=1).flatten(1)  # the reference's pool
        hook.remove()
        theta, beta, scale, trans, rot = reference_decoder(feat, data["decoder"], use_mean_shape=False)
    mano = load_mano_pickle(mano_dir / "MANO_RIGHT.pkl")
    jv_j, jv_v = reference_mano(mano, rot, theta, beta)
    s = scale.abs().to(torch.float64)[:, :, None]
    joints = trans.to(torch.float64)[:, None] + s * jv_j
    verts = trans.to(torch.float64)[:, None] + s * jv_v
    assert float(rot.norm(dim=1).min()) > 0.5 and float(theta.abs().max()) > 0.1  # a real rotation and pose
    torch.testing.assert_close(out.pose, theta, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.betas, beta, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.rot_aa, rot, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.scale, scale.abs(), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.transl, trans, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.verts.double(), verts, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(out.joints.double(), joints[:, REFERENCE_TO_FREIHAND], atol=2e-5, rtol=1e-4)
    tex, light = reference_texture_light(low["map"], data["texture_light_from_low"])
    torch.testing.assert_close(out.face_texture, tex, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.lighting, light, atol=1e-4, rtol=1e-4)


def _residual_f(x, sd, p):
    y = F.conv2d(F.relu(_bn_f(x, sd, f"{p}.bn")), sd[f"{p}.conv1.weight"], sd[f"{p}.conv1.bias"])
    y = F.conv2d(F.relu(_bn_f(y, sd, f"{p}.bn1")), sd[f"{p}.conv2.weight"], sd[f"{p}.conv2.bias"], padding=1)
    y = F.conv2d(F.relu(_bn_f(y, sd, f"{p}.bn2")), sd[f"{p}.conv3.weight"], sd[f"{p}.conv3.bias"])
    skip = F.conv2d(x, sd[f"{p}.conv4.weight"], sd[f"{p}.conv4.bias"]) if f"{p}.conv4.weight" in sd else x
    return y + skip


def _hourglass_f(x, sd, p, n):
    up = _residual_f(_residual_f(x, sd, f"{p}.up1_.0"), sd, f"{p}.up1_.1")
    low = _residual_f(_residual_f(F.max_pool2d(x, 2), sd, f"{p}.low1_.0"), sd, f"{p}.low1_.1")
    if n > 1:
        low = _hourglass_f(low, sd, f"{p}.low2", n - 1)
    else:
        low = _residual_f(_residual_f(low, sd, f"{p}.low2_.0"), sd, f"{p}.low2_.1")
    low = _residual_f(_residual_f(low, sd, f"{p}.low3_.0"), sd, f"{p}.low3_.1")
    return up + F.interpolate(low, scale_factor=2, mode="nearest")


def reference_heatmaps(image, sd):
    """RGB2HM: pad to 256 px on the right and bottom, image - 0.5, Net_HM_HG with 2 stacks and 2 modules."""
    x = F.pad(image, (0, 256 - image.shape[-1], 0, 256 - image.shape[-2])) - 0.5
    x = F.relu(_bn_f(F.conv2d(x, sd["net_hm.conv1_.weight"], sd["net_hm.conv1_.bias"], stride=2, padding=3), sd,
                     "net_hm.bn1"))
    x = _residual_f(_residual_f(F.max_pool2d(_residual_f(x, sd, "net_hm.r1"), 2), sd, "net_hm.r4"), sd, "net_hm.r5")
    out = []
    for i in range(2):
        ll = _hourglass_f(x, sd, f"net_hm.hourglass.{i}", 4)
        ll = _residual_f(_residual_f(ll, sd, f"net_hm.Residual.{2 * i}"), sd, f"net_hm.Residual.{2 * i + 1}")
        ll = F.relu(_bn_f(F.conv2d(ll, sd[f"net_hm.lin_.{i}.0.weight"], sd[f"net_hm.lin_.{i}.0.bias"]), sd,
                          f"net_hm.lin_.{i}.1"))
        hm = F.conv2d(ll, sd[f"net_hm.tmpOut.{i}.weight"], sd[f"net_hm.tmpOut.{i}.bias"])
        out.append(hm)
        if i == 0:
            x = x + F.conv2d(ll, sd["net_hm.ll_.0.weight"], sd["net_hm.ll_.0.bias"]) + F.conv2d(
                hm, sd["net_hm.tmpOut_.0.weight"], sd["net_hm.tmpOut_.0.bias"])
    return out


def test_converted_2d_branch_gives_the_reference_heatmaps_and_keypoints(converted, loaded):
    _, ckpt, data, _ = converted
    net = loaded[0].net
    image = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        stages = net.kp_branch(image)
        want = reference_heatmaps(image, data["rgb2hm"])
    assert stages[-1][0].shape == (1, 21, 64, 64)
    for (hm, uv, _), ref in zip(stages, want):
        torch.testing.assert_close(hm, ref, atol=1e-4, rtol=1e-4)
        # the reference's integral keypoints: upsampled to 256 px (corners aligned), softmax, expected index
        prob = torch.softmax(F.interpolate(ref, size=(256, 256), mode="bilinear", align_corners=True).flatten(2), -1)
        idx = torch.arange(256.0)
        u = (prob.view(1, 21, 256, 256).sum(2) * idx).sum(-1)
        v = (prob.view(1, 21, 256, 256).sum(3) * idx).sum(-1)
        torch.testing.assert_close(uv, torch.stack([u, v], -1), atol=1e-3, rtol=1e-4)


def test_converted_checkpoint_initialises_a_new_run(converted, mano_dir):
    """init_from= takes the converted checkpoint: every tensor of a new model=s2hand_reference run."""
    from handrecon.cli import compose_config
    from handrecon.cli.train import build_module

    _, ckpt, _, _ = converted
    cfg = compose_config(["model=s2hand_reference", "hand_model=mano", f"hand_model.path={mano_dir}",
                          "model.mean_shape=false"])
    module = build_module(cfg)
    before = module.state_dict()["net.regressor.pose.2.weight"].clone()
    taken = module.init_from(str(ckpt))
    assert set(taken) == set(module.state_dict())
    assert not torch.equal(before, module.state_dict()["net.regressor.pose.2.weight"])


def test_bad_t7_files_are_errors_naming_the_key(converted, loaded):
    _, ckpt, data, _ = converted
    net = loaded[0].net
    path = Path("bad.t7")

    def variant(**edits):
        d = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
        for part, fn in edits.items():
            fn(d[part]) if part in d else None
        return d

    missing = variant(decoder=lambda sd: sd.pop("hand_decode.rot_reg.3.weight"))
    with pytest.raises(ConversionError, match=r"'decoder' key 'hand_decode\.rot_reg\.3\.weight'"):
        map_state(missing, net, path)
    misshaped = variant(decoder=lambda sd: sd.__setitem__("hand_decode.pose_reg.2.weight", torch.zeros(45, 128)))
    with pytest.raises(ConversionError, match=r"'decoder' key 'hand_decode\.pose_reg\.2\.weight' has shape \(45, 128\)"):
        map_state(misshaped, net, path)
    d = variant()
    d.pop("rgb2hm")
    with pytest.raises(ConversionError, match=r"'rgb2hm' key 'net_hm\."):
        map_state(d, net, path)
    extra = variant(encoder=lambda sd: sd.__setitem__("encoder._blocks.3._bn9.weight", torch.zeros(3)))
    with pytest.raises(ConversionError, match=r"'encoder' key 'encoder\._blocks\.3\._bn9\.weight'"):
        map_state(extra, net, path)
    d = variant()
    d["mesh2pose"] = {"net.0.weight": torch.zeros(2, 2)}
    with pytest.raises(ConversionError, match="'mesh2pose'"):
        map_state(d, net, path)


def test_convert_command_line(tmp_path, converted, mano_dir, capsys):
    """Errors are one line naming the problem; an existing out file is never overwritten; a pickle
    with code in it is refused."""
    t7, ckpt, _, _ = converted
    before = ckpt.read_bytes()[:64], ckpt.stat().st_size
    assert main(["s2hand", str(t7), f"out={ckpt}", f"hand_model.path={mano_dir}"]) == 1
    assert "exists" in capsys.readouterr().err
    assert (ckpt.read_bytes()[:64], ckpt.stat().st_size) == before
    assert main(["s2hand", str(t7), f"hand_model.path={mano_dir}"]) == 2
    assert "out=" in capsys.readouterr().err
    evil = tmp_path / "evil.t7"
    torch.save({"args": Path("x"), "encoder": {}}, evil)  # a class outside the allow-list
    assert main(["s2hand", str(evil), f"out={tmp_path / 'x.ckpt'}", f"hand_model.path={mano_dir}"]) == 1
    assert "weights_only" in capsys.readouterr().err and not (tmp_path / "x.ckpt").exists()
    assert main(["s2hand", str(t7), f"out={tmp_path / 'y.ckpt'}"]) == 1
    assert "hand_model.path" in capsys.readouterr().err and not (tmp_path / "y.ckpt").exists()


def test_config_follows_the_files_args(tmp_path):
    from handrecon.convert import config_overrides

    ns = argparse.Namespace(regress_mode="mano", use_mean_shape=True, use_2d_as_attention=True, image_size=224)
    over = config_overrides({"args": ns}, tmp_path / "a.t7")
    assert "model.mean_shape=true" in over and "model.heatmap_attention=true" in over
    with pytest.raises(ConversionError, match="regress_mode='hm2mano'"):
        config_overrides({"args": argparse.Namespace(regress_mode="hm2mano")}, tmp_path / "a.t7")


def test_face_colours_render_flat_and_average_onto_vertices(loaded):
    """model.appearance=reference: each face is drawn with its own colour (corners unshared); mesh
    files get per-vertex colours = the mean of the faces around each vertex."""
    from handrecon.models.network import HandReconOutput, face_to_vertex_colours

    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    cols = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])
    v = face_to_vertex_colours(cols, faces, 5)
    torch.testing.assert_close(v, torch.tensor([[[0.5, 0, 0.5], [1, 0, 0], [0.5, 0, 0.5], [0, 0, 1], [0, 0, 0]]]))

    module = loaded[0]
    mesh_faces = module.net.hand_model.faces
    B, V, Fn = 1, module.net.hand_model.num_verts, mesh_faces.shape[0]
    verts = torch.randn(B, V, 3)
    face_tex = torch.rand(B, Fn, 3)
    seen = {}

    def fake_renderer(verts_in, faces_in, colours, K, size, light, background):
        seen.update(verts=verts_in, faces=faces_in, colours=colours)

    z = torch.zeros(B, 3)
    out = HandReconOutput(pose=z, betas=z, rotmat=torch.eye(3)[None], rot_aa=z, scale=z[:, :1], transl=z,
                          local_pose=z, verts=verts, joints=z, kp2d_proj=z, face_texture=face_tex)
    module.render(out, torch.eye(3)[None], (8, 8), renderer=fake_renderer)
    assert seen["verts"].shape == (B, 3 * Fn, 3) and seen["faces"].shape == (Fn, 3)
    corners = seen["verts"][0][seen["faces"]]  # (F, 3, 3): the faces' corners
    torch.testing.assert_close(corners, verts[0][mesh_faces])
    torch.testing.assert_close(seen["colours"][0][seen["faces"]], face_tex[0][:, None].expand(Fn, 3, 3))


@pytest.mark.slow
def test_readme_commands_on_a_converted_model(tmp_path, mano_dir):
    """README "S2HAND's published models": convert, evaluate on a FreiHAND-layout folder, predict on
    photos, as the three commands there (fresh processes)."""
    import subprocess
    import sys

    import cv2

    from conftest import run_cli
    from data_fixtures import make_freihand_tree

    write_reference_t7(tmp_path / "texturehand_freihand.t7", use_mean_shape=True)
    p = subprocess.run([sys.executable, "-m", "handrecon.convert", "s2hand", "texturehand_freihand.t7",
                        "out=s2hand_freihand.ckpt", f"hand_model.path={mano_dir}"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "left out: encoder/encoder._fc.weight, encoder/encoder._fc.bias" in p.stdout
    make_freihand_tree(tmp_path / "FreiHAND", n=1, versions=1, n_eval=2, n_verts=778)
    run_cli(["task=evaluate", "data=freihand", f"data.root={tmp_path / 'FreiHAND'}", "ckpt=s2hand_freihand.ckpt",
             "hand_model=mano", f"hand_model.path={mano_dir}", "data.num_workers=0", "out=eval"], cwd=tmp_path)
    pred = json.loads((tmp_path / "eval" / "pred.json").read_text())
    assert len(pred[0]) == 2 and len(pred[1][0]) == 778  # FreiHAND's [xyz, verts] lists
    photos = tmp_path / "my_photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "a.png"), (np.random.default_rng(0).random((240, 200, 3)) * 255).astype(np.uint8))
    run_cli(["task=predict", "ckpt=s2hand_freihand.ckpt", "input=my_photos/", "hand_model=mano",
             f"hand_model.path={mano_dir}", "out=pred"], cwd=tmp_path)
    assert (tmp_path / "pred" / "a_overlay.png").is_file() and (tmp_path / "pred" / "a.obj").is_file()
