"""Benchmark of ``hand_model=nimble``: the NIMBLE layer and its textured render against the open hand
model's layer and render (the MANO code path: smplx.MANO; MANO itself is licensed and not here) at
the same batch.

Rows (forward only, no gradients, unless "fwd+bwd"):
  layer      pose + shape coefficients -> mesh + 21 keypoints (+ NIMBLE's 778 MANO-topology vertices)
  texture    NIMBLE's 10 texture coefficients -> the T x T diffuse albedo map
  render     soft rasteriser forward + backward: the open hand with per-vertex colours vs NIMBLE's skin
             with its UV albedo map (the training path), at ``--size`` px

NIMBLE's asset files are distributed on request, so by default the layer runs on a stand-in of
NIMBLE's sizes and structure (tests/fixtures_nimble.py: the open hand mesh subdivided once, 6,170
skin vertices / 12,336 faces against NIMBLE's 5,990 / 9,984, a 1024 x 1024 diffuse map);
``--nimble PATH`` times the real files.

    python bench/bench_nimble.py                  # B = 16, 224 px, CPU
    python bench/bench_nimble.py --quick          # B = 4, 128 px, 256 px map (< 60 s)
    python bench/bench_nimble.py --device cuda
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from common import MIN_REPEAT, interleave, table

from handrecon.models.hand_model import HandModel
from handrecon.models.nimble import NIMBLEModel
from handrecon.render import SoftRasterizer, UVTexture


def stand_in(folder: Path, tex_size: int) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from fixtures_nimble import write_nimble_assets

    return write_nimble_assets(folder, subdivide=1, tex_size=tex_size, maps=("diffuse",))


def place(verts: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Centre the hands at 0.6 m in front of the camera."""
    return verts - verts.mean(1, keepdim=True) + torch.tensor([0.0, 0.0, 0.6], device=verts.device)


def measure(batch: int, size: int, tex_size: int, device: str, nimble_path: str | None, repeat: int) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        path = nimble_path or stand_in(Path(tmp), tex_size)
        nim = NIMBLEModel(path, maps=["diffuse"]).to(device)
    oh = HandModel().to(device)
    g = torch.Generator().manual_seed(0)
    pose_n = (0.5 * torch.randn(batch, nim.pose_dim, generator=g)).to(device)
    beta_n = torch.randn(batch, nim.num_betas, generator=g).to(device)
    tex_n = torch.randn(batch, nim.tex_dim, generator=g).to(device)
    pose_o = (0.5 * torch.randn(batch, oh.pose_dim, generator=g)).to(device)
    beta_o = torch.randn(batch, oh.num_betas, generator=g).to(device)
    f = 520.0 * size / 224.0
    K = torch.tensor([[f, 0.0, (size - 1) / 2], [0.0, f, (size - 1) / 2], [0.0, 0.0, 1.0]], device=device).expand(batch, 3, 3)
    rend = SoftRasterizer()
    with torch.no_grad():
        v_oh = place(oh(pose_o, beta_o).verts, K)
        v_nim = place(nim(pose_n, beta_n).verts, K)
        tmap = nim.texture(tex_n)
    col = torch.full_like(v_oh, 0.7)

    def layer_oh():
        with torch.no_grad():
            oh(pose_o, beta_o)

    def layer_nim():
        with torch.no_grad():
            nim(pose_n, beta_n)

    def texture_nim():
        with torch.no_grad():
            nim.texture(tex_n)

    def render_oh():
        v = v_oh.clone().requires_grad_()
        c = col.clone().requires_grad_()
        out = rend(v, oh.faces, c, K, size)
        (out.rgb.sum() + out.silhouette.sum()).backward()

    def render_nim():
        v = v_nim.clone().requires_grad_()
        m = tmap.clone().requires_grad_()
        out = rend(v, nim.faces, UVTexture(m, nim.verts_uvs, nim.faces_uvs), K, size)
        (out.rgb.sum() + out.silhouette.sum()).backward()

    t = interleave({"layer_oh": layer_oh, "layer_nim": layer_nim, "texture_nim": texture_nim}, repeat, device=device)
    r = interleave({"render_oh": render_oh, "render_nim": render_nim}, repeat, device=device)
    what = "real NIMBLE files" if nimble_path else "NIMBLE-sized stand-in"
    rows = [
        {"part": "layer (fwd)", "open hand ms": t["layer_oh"].ms(), "NIMBLE ms": t["layer_nim"].ms(),
         "NIMBLE / open hand": f"{t['layer_nim'].median / t['layer_oh'].median:.2f}"},
        {"part": f"texture map {nim.texture_size}^2 (fwd)", "open hand ms": "-", "NIMBLE ms": t["texture_nim"].ms(),
         "NIMBLE / open hand": "-"},
        {"part": f"soft render {size} px (fwd+bwd)", "open hand ms": r["render_oh"].ms(), "NIMBLE ms": r["render_nim"].ms(),
         "NIMBLE / open hand": f"{r['render_nim'].median / r['render_oh'].median:.2f}"},
    ]
    for row in rows:
        row.update({"B": batch, "device": device, "meshes": f"{oh.num_verts} v / {len(oh.faces)} f vs {nim.num_verts} v / "
                    f"{len(nim.faces)} f ({what})"})
    return rows


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--tex-size", type=int, default=1024)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--nimble", default=None, help="a folder with NIMBLE's real asset files")
    ap.add_argument("--repeat", type=int, default=MIN_REPEAT)
    a = ap.parse_args(argv)
    if a.quick:
        a.batch, a.size, a.tex_size = 4, 128, 256
    rows = measure(a.batch, a.size, a.tex_size, a.device, a.nimble, a.repeat)
    print(table(rows, "hand_model=nimble vs the open hand model (median [min, max] ms)"))
    return rows


if __name__ == "__main__":
    main()
