"""The notebook runs top to bottom on the embedded default (a trained tiny checkpoint)."""

import os

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")


@pytest.mark.parametrize("ckpt", ["trained_ckpt_session", "keypoint_ckpt"])
def test_notebook_runs(ckpt, request, synth_cache, tmp_path, monkeypatch):
    """Image-only and keypoint-reading checkpoints (the latter gets the synthetic image's detections)."""
    from pathlib import Path

    trained_ckpt_session = request.getfixturevalue(ckpt)
    nb_path = Path(__file__).parents[1] / "notebooks" / "reconstruct_one_image.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    monkeypatch.setenv("HANDRECON_CKPT", str(trained_ckpt_session))
    monkeypatch.setenv("HANDRECON_CACHE", str(synth_cache))
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    assert (tmp_path / "notebook_overlay.png").stat().st_size > 1000
    assert (tmp_path / "notebook_mesh3d.png").stat().st_size > 1000
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "vertices: torch.Size([1," in outputs
    assert os.environ["HANDRECON_CKPT"] in outputs
    assert ("2D keypoints from: detections" in outputs) == (ckpt == "keypoint_ckpt")
