"""``python -m handrecon.convert s2hand FILE.t7 out=X.ckpt hand_model.path=/data/mano [overrides...]``.

Converts a model saved by the S2HAND reference code (github TerenceCYJ/S2HAND, its ``save_model``:
``texturehand_freihand.t7``, ``texturehand_ho3d.t7``) into an ordinary handrecon checkpoint of
``model=s2hand_reference`` (hyper_parameters.config + state_dict), which ``task=evaluate``,
``task=predict``, ``task=export`` and ``init_from=`` take.

The .t7 file is a ``torch.save`` of a dict: ``args`` (an argparse.Namespace), ``optimizer``,
``epoch`` and one state dict per network part. It is read with ``torch.load(weights_only=True)``
(argparse.Namespace allowed, nothing else that could run code). Every tensor of every part must
map onto the network, and every tensor of the network must come from the file, with equal shapes;
otherwise the error names the part and the key. The only tensors left out are EfficientNet's
ImageNet classifier (``encoder._fc.*``), which the reference's forward never uses.

Further ``key=value`` arguments are handrecon config overrides (e.g. ``hand_model.side=left``).
An existing ``out`` file is never overwritten.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import torch

log = logging.getLogger(__name__)

#: entries of the .t7 that are not network weights
METADATA = ("args", "optimizer", "epoch")
#: parts the reference code may save that have no place in the network it evaluates (regress_mode=mano):
#: handrecon refuses a file where they hold weights
UNSUPPORTED_PARTS = ("hm2hand", "mesh2pose", "percep_encoder", "renderer", "texture_estimator",
                     "pca_texture_estimator", "light_estimator")
#: EfficientNet's ImageNet classifier: saved with the encoder, never used by the reference's forward
DROPPED_PREFIXES = {"encoder": ("encoder._fc.",)}

# efficientnet_pytorch (the reference's vendored copy) -> timm names
_EFF_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2"}
_EFF_DS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand",
           "_project_conv": "conv_pw", "_bn2": "bn2"}  # blocks without expansion (timm DepthwiseSeparableConv)
_EFF_IR = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
           "_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand", "_project_conv": "conv_pwl",
           "_bn2": "bn3"}  # inverted residual blocks (timm InvertedResidual)
# reference decoder head -> handrecon regressor head
_HEADS = {"base_layers": "trunk", "pose_reg": "pose", "shape_reg": "betas", "trans_reg": "cam", "rot_reg": "rot",
          "scale_reg": "scale"}


class ConversionError(ValueError):
    pass


def efficientnet_block_layout(backbone: torch.nn.Module) -> list[tuple[int, int, bool]]:
    """(stage, index in stage, has expansion) of each block of a timm EfficientNet, in the flat order of
    efficientnet_pytorch's ``_blocks``."""
    out = []
    for s, stage in enumerate(backbone.blocks):
        for j, block in enumerate(stage):
            out.append((s, j, type(block).__name__ != "DepthwiseSeparableConv"))
    return out


def efficientnet_pytorch_key_to_timm(key: str, layout: list[tuple[int, int, bool]]) -> str | None:
    """An efficientnet_pytorch EfficientNet state-dict key -> the timm model's key (None: the classifier)."""
    head, _, rest = key.partition(".")
    if head == "_fc":
        return None
    if head in _EFF_TOP:
        return f"{_EFF_TOP[head]}.{rest}"
    if head == "_blocks":
        idx, _, rest = rest.partition(".")
        sub, _, leaf = rest.partition(".")
        if not idx.isdigit() or int(idx) >= len(layout):
            raise KeyError(key)
        s, j, expands = layout[int(idx)]
        names = _EFF_IR if expands else _EFF_DS
        if sub not in names:
            raise KeyError(key)
        return f"blocks.{s}.{j}.{names[sub]}.{leaf}"
    raise KeyError(key)


def timm_key_to_efficientnet_pytorch(key: str, layout: list[tuple[int, int, bool]]) -> str:
    """The inverse of :func:`efficientnet_pytorch_key_to_timm` (for naming a missing key)."""
    parts = key.split(".")
    if parts[0] == "blocks":
        s, j = int(parts[1]), int(parts[2])
        flat = next(i for i, (ss, jj, _) in enumerate(layout) if (ss, jj) == (s, j))
        names = _EFF_IR if layout[flat][2] else _EFF_DS
        rest = ".".join(parts[3:])
        for ref, ours in names.items():
            if rest.startswith(ours + "."):
                return f"_blocks.{flat}.{ref}.{rest[len(ours) + 1:]}"
    for ref, ours in _EFF_TOP.items():
        if key.startswith(ours + "."):
            return f"{ref}.{key[len(ours) + 1:]}"
    return key


def efficientnet_pytorch_to_timm(state: dict, backbone: torch.nn.Module) -> dict:
    """An efficientnet_pytorch EfficientNet state dict -> the timm model's (the classifier left out)."""
    layout = efficientnet_block_layout(backbone)
    out = {}
    for k, v in state.items():
        t = efficientnet_pytorch_key_to_timm(k, layout)
        if t is not None:
            out[t] = v
    return out


def _part_rules(net) -> dict[str, tuple[Callable[[str], str | None], Callable[[str], tuple[str, str] | None]]]:
    """Per reference part: (its key -> our net key or None if dropped; our net key -> (part, its key) or
    None if the key is not this part's)."""
    layout = efficientnet_block_layout(net.encoder.backbone)

    def enc_fwd(k):
        if not k.startswith("encoder."):
            raise KeyError(k)
        t = efficientnet_pytorch_key_to_timm(k[len("encoder."):], layout)
        return None if t is None else "encoder.backbone." + t

    def enc_inv(k):
        p = "encoder.backbone."
        return ("encoder", "encoder." + timm_key_to_efficientnet_pytorch(k[len(p):], layout)) if k.startswith(p) else None

    def dec_fwd(k):
        p = "hand_decode."
        head, _, rest = k[len(p):].partition(".") if k.startswith(p) else ("", "", "")
        if head not in _HEADS:
            raise KeyError(k)
        return f"regressor.{_HEADS[head]}.{rest}"

    def dec_inv(k):
        if not k.startswith("regressor.") or k.startswith("regressor.attention."):
            return None
        head, _, rest = k[len("regressor."):].partition(".")
        ref = {v: r for r, v in _HEADS.items()}.get(head, head)
        return "decoder", f"hand_decode.{ref}.{rest}"

    def prefixed(ref_prefix, our_prefix, part, exclude=None):
        def fwd(k):
            if not k.startswith(ref_prefix):
                raise KeyError(k)
            return our_prefix + k[len(ref_prefix):]

        def inv(k):
            if not k.startswith(our_prefix) or (exclude and k.startswith(exclude)):
                return None
            return part, ref_prefix + k[len(our_prefix):]

        return fwd, inv

    return {
        "encoder": (enc_fwd, enc_inv),
        "decoder": (dec_fwd, dec_inv),
        "rgb2hm": prefixed("net_hm.", "kp_branch.", "rgb2hm"),
        "texture_light_from_low": prefixed("", "appearance.", "texture_light_from_low"),
        "heatmap_attention": prefixed("", "regressor.attention.", "heatmap_attention"),
    }


def load_t7(path: str | Path) -> dict:
    """The reference's .t7 file, read without running code (argparse.Namespace allowed)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (the S2HAND model, e.g. texturehand_freihand.t7)")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is reported with the file's name
        raise ConversionError(f"{path}: not readable as an S2HAND model with torch.load(weights_only=True) "
                              f"(only tensors, plain containers and argparse.Namespace are allowed): {e}") from e
    if not isinstance(data, dict):
        raise ConversionError(f"{path}: expected a dict of state dicts (S2HAND's save_model), got {type(data).__name__}")
    return data


def reference_args(data: dict) -> dict:
    args = data.get("args")
    if args is None:
        return {}
    return dict(vars(args)) if isinstance(args, argparse.Namespace) else dict(args) if isinstance(args, dict) else {}


def config_overrides(data: dict, path: Path) -> list[str]:
    """model / data overrides that the file's ``args`` (and parts) ask for."""
    args = reference_args(data)
    mode = args.get("regress_mode", "mano")
    if mode != "mano":
        raise ConversionError(f"{path}: args.regress_mode={mode!r}; handrecon reproduces the reference's "
                              "regress_mode='mano' network only")
    over = [f"model.mean_shape={str(bool(args.get('use_mean_shape', True))).lower()}"]
    attention = "heatmap_attention" in data or bool(args.get("use_2d_as_attention", False))
    over.append(f"model.heatmap_attention={str(attention).lower()}")
    if args.get("image_size") is not None:
        over.append(f"data.image_size={int(args['image_size'])}")
    return over


def map_state(data: dict, net: torch.nn.Module, path: Path) -> tuple[dict, list[str]]:
    """The .t7's parts -> the net's state dict (every key checked) and the list of dropped keys."""
    rules = _part_rules(net)
    own = net.state_dict()
    for part in UNSUPPORTED_PARTS:
        if part in data and isinstance(data[part], dict) and len(data[part]):
            raise ConversionError(f"{path}: part {part!r} holds weights, but it is no part of the reference network "
                                  "that handrecon reproduces (S2HAND's Model with regress_mode='mano')")
    unknown = [k for k in data if k not in rules and k not in METADATA and k not in UNSUPPORTED_PARTS]
    if unknown:
        raise ConversionError(f"{path}: unknown entries {unknown}; expected S2HAND parts {sorted(rules)}")
    mapped, dropped = {}, []
    for part in rules:
        if part not in data:
            continue
        state = data[part]
        if not isinstance(state, dict):
            raise ConversionError(f"{path}: part {part!r} is a {type(state).__name__}, expected a state dict")
        for k, v in state.items():
            if any(k.startswith(p) for p in DROPPED_PREFIXES.get(part, ())):
                dropped.append(f"{part}/{k}")
                continue
            try:
                ours = rules[part][0](k)
            except KeyError:
                raise ConversionError(f"{path}: part {part!r} key {k!r} has no counterpart in model=s2hand_reference") from None
            if ours not in own:
                raise ConversionError(f"{path}: part {part!r} key {k!r} has no counterpart in model=s2hand_reference "
                                      f"(it would be {ours!r})")
            if not isinstance(v, torch.Tensor):
                raise ConversionError(f"{path}: part {part!r} key {k!r} is a {type(v).__name__}, expected a tensor")
            if tuple(v.shape) != tuple(own[ours].shape):
                raise ConversionError(f"{path}: part {part!r} key {k!r} has shape {tuple(v.shape)}; model=s2hand_reference "
                                      f"expects {tuple(own[ours].shape)} ({ours})")
            mapped[ours] = v.to(own[ours].dtype)
    missing = [k for k in own if k not in mapped]
    if missing:
        named = []
        for k in missing:
            ref = next((r for _, inv in rules.values() if (r := inv(k)) is not None), None)
            named.append(f"{ref[0]!r} key {ref[1]!r}" if ref else repr(k))
        parts = sorted({n.split(" ")[0] for n in named})
        raise ConversionError(f"{path}: {len(missing)} tensors of model=s2hand_reference are not in the file, "
                              f"first: part {named[0]} (parts concerned: {', '.join(parts)})")
    return mapped, dropped


def convert_s2hand(t7: str | Path, out: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Convert the reference's .t7 into a handrecon checkpoint at ``out`` (never overwritten).
    Returns a summary dict."""
    import pytorch_lightning as pl
    from omegaconf import OmegaConf

    from handrecon.cli import compose_config
    from handrecon.cli.train import build_module

    t7, out = Path(t7), Path(out)
    if out.exists():
        raise FileExistsError(f"out={out} exists; handrecon never overwrites a file (choose another out=)")
    data = load_t7(t7)
    over = ["model=s2hand_reference", "hand_model=mano", *config_overrides(data, t7), *overrides]
    cfg = compose_config(over)
    if OmegaConf.is_missing(cfg.hand_model, "path"):
        raise ConversionError("the S2HAND models need MANO: pass hand_model.path=<folder with MANO_RIGHT.pkl, or the "
                              "file> (register at https://mano.is.tue.mpg.de)")
    module = build_module(cfg)
    mapped, dropped = map_state(data, module.net, t7)
    module.net.load_state_dict(mapped, strict=True)
    args = reference_args(data)
    summary = {
        "source": str(t7), "epoch": data.get("epoch"), "tensors": len(mapped), "dropped": dropped,
        "parts": [p for p in ("encoder", "decoder", "rgb2hm", "texture_light_from_low", "heatmap_attention") if p in data],
        "train_datasets": list(args.get("train_datasets") or []),
        "overrides": over,
    }
    ckpt = {
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
        "pytorch-lightning_version": pl.__version__,
        "epoch": 0, "global_step": 0,
        "handrecon_converted_from": summary,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "xb") as fh:  # exclusive: never writes over a file made meanwhile
        torch.save(ckpt, fh)
    return summary


USAGE = ("usage: python -m handrecon.convert s2hand FILE.t7 out=X.ckpt hand_model.path=/data/mano [config overrides]\n"
         "  converts a model saved by the S2HAND reference code (texturehand_freihand.t7, texturehand_ho3d.t7)\n"
         "  into a handrecon checkpoint of model=s2hand_reference")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 2 or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    kind, src, rest = argv[0], argv[1], argv[2:]
    if kind != "s2hand":
        print(f"unknown source format {kind!r}; supported: s2hand\n{USAGE}", file=sys.stderr)
        return 2
    outs = [a.split("=", 1)[1] for a in rest if a.startswith("out=")]
    if not outs or not outs[-1]:
        print(f"out=<path of the handrecon checkpoint to write> is required\n{USAGE}", file=sys.stderr)
        return 2
    overrides = [a for a in rest if not a.startswith("out=")]
    try:
        summary = convert_s2hand(src, outs[-1], overrides)
    except (ConversionError, FileNotFoundError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {outs[-1]}: {summary['tensors']} tensors from parts {', '.join(summary['parts'])} of {src} "
          f"(epoch {summary['epoch']}); left out: {', '.join(summary['dropped']) or 'nothing'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
