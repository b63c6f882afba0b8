"""The examples that read N-MNIST, run as scripts on a folder that does not hold it:
one line ``<script>.py: error: <what is missing, where to get it>`` on stderr and exit
status 2 (argparse's), not a traceback."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

#: Each script, with the arguments that point it at N-MNIST under a given root.
SCRIPTS = {
    "bootstrap_nmnist": ["--nmnist-root"],
    "conv_stdp_nmnist": ["--nmnist-root"],
    "convert_digits": ["--dataset", "nmnist", "--nmnist-root"],
    "convert_vit_digits": ["--dataset", "nmnist", "--nmnist-root"],
    "decolle_nmnist": ["--nmnist-root"],
    "detect_nmnist": ["--root"],
    "eprop_digits": ["--dataset", "nmnist", "--nmnist-root"],
    "forward_forward_digits": ["--dataset", "nmnist", "--nmnist-root"],
    "eventprop_digits": ["--dataset", "nmnist", "--nmnist-root"],
    "lava_slayer_nmnist": ["--root"],
    "loihi_nmnist": ["--root"],
    "nmnist_loop": ["--root"],
    "receptive_field_nmnist": ["--root"],
    "residual_depth": ["--dataset", "nmnist", "--data-dir"],
    "sigma_delta_digits": ["--dataset", "nmnist", "--nmnist-root"],
    "spiking_autoencoder": ["--dataset", "nmnist", "--nmnist-root"],
    "stdp_convnet_digits": ["--dataset", "nmnist", "--nmnist-root"],
    "training_tricks_digits": ["--dataset", "nmnist", "--root"],
}


def test_every_example_that_reads_nmnist_is_listed():
    reading = {p.stem for p in EXAMPLES.glob("*.py") if "nmnist" in p.read_text().lower()}
    reading -= {"flow_translboxes"}  # names no N-MNIST root
    assert reading <= set(SCRIPTS), sorted(reading - set(SCRIPTS))


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_a_missing_root_is_one_line_and_status_2(name, tmp_path, monkeypatch, capsys):
    root = tmp_path / "absent"
    script = EXAMPLES / f"{name}.py"
    monkeypatch.setattr(sys, "argv", [str(script), *SCRIPTS[name], str(root)])
    monkeypatch.syspath_prepend(str(EXAMPLES))  # convert_vit_digits imports convert_digits
    threads = torch.get_num_threads()  # lava_slayer_nmnist sets one thread
    try:
        with pytest.raises(SystemExit) as info:
            runpy.run_path(str(script), run_name="__main__")
    finally:
        torch.set_num_threads(threads)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"{name}.py: error: N-MNIST not found: {root / 'Train'}"), err
    # the script's own way to the data, not the library's download=True, as the advice
    assert "Pass download=True" not in err, err
    if name == "nmnist_loop":  # the one with a --download option
        assert "Pass --download to download Train.zip" in err, err
    else:
        assert f"This script does not download: point {SCRIPTS[name][-1]} at the" in err, err


def test_nmnist_loop_without_its_data_prints_no_traceback(tmp_path):
    """The script as a user runs it, from a folder where ``--root`` (relative) is
    missing: the error names the absolute folder and this script's ``--download``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(EXAMPLES.parent / "src"), env.get("PYTHONPATH", "")])
    run = subprocess.run(
        [sys.executable, str(EXAMPLES / "nmnist_loop.py"), "--root", "data"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr and run.stderr.count("\n") == 1, run.stderr
    absolute = tmp_path.resolve() / "data" / "Train"
    assert run.stderr.startswith(f"nmnist_loop.py: error: N-MNIST not found: data/Train "
                                 f"(absolute: {absolute}) does not exist"), run.stderr  # fmt: skip
    assert "Pass --download to download Train.zip" in run.stderr
    assert "download=True" not in run.stderr


def test_flow_translboxes_without_its_recording_prints_no_traceback(tmp_path):
    """``--file`` (relative) missing: one line naming the absolute path, status 2."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(EXAMPLES.parent / "src"), env.get("PYTHONPATH", "")])
    run = subprocess.run(
        [sys.executable, str(EXAMPLES / "flow_translboxes.py"), "--file", "boxes.aedat"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr and run.stderr.count("\n") == 1, run.stderr
    absolute = tmp_path.resolve() / "boxes.aedat"
    assert run.stderr.startswith(f"flow_translboxes.py: error: recording not found: "
                                 f"boxes.aedat (absolute: {absolute})"), run.stderr  # fmt: skip
