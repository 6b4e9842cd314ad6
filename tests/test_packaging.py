"""A non-editable install carries conf/ and the open hand model, and `python -m handrecon` finds
its config from any working directory."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.mark.slow
def test_wheel_ships_config_and_asset_and_runs_from_elsewhere(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)], check=True)
    whl = next(wheels.glob("handrecon-*.whl"))
    names = zipfile.ZipFile(whl).namelist()
    assert "handrecon/conf/config.yaml" in names and "handrecon/conf/stage/ssl_e2e.yaml" in names
    assert "handrecon/models/assets/OPENHAND_RIGHT.pkl" in names
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(whl)], check=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = dict(os.environ, PYTHONPATH=str(target))  # the installed copy shadows the source tree
    code = "import handrecon.cli as c; print(c.__file__); print(c.conf_dir())"
    p = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True, check=True)
    module_file, conf = p.stdout.split()
    assert module_file.startswith(str(target)) and conf == str(target / "handrecon" / "conf")
    p = subprocess.run([sys.executable, "-m", "handrecon", "--cfg", "job", "stage=ssl_kp"], cwd=elsewhere, env=env,
                       capture_output=True, text=True, check=True)
    assert "name: ssl_kp" in p.stdout and "_target_: handrecon.models.hand_model.HandModel" in p.stdout
