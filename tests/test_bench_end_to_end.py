"""benchmarks/bench_end_to_end.py's N-MNIST data pipeline: it reads the folder that
``--data-dir`` names (not only the default ``../shared/data/nmnist-small``), and its
peers' frames are checked against spikeflow's."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from test_data_cache import fake_nmnist

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_the_data_pipeline_reads_the_data_dir_given(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    bench = importlib.import_module("bench_end_to_end")
    try:
        root = fake_nmnist(tmp_path / "nmnist", per_label=2)
        args = argparse.Namespace(data_dir=str(root), rounds=1)
        bench.data_pipeline(args, str(tmp_path / "cache"))
    finally:
        sys.modules.pop("bench_end_to_end", None)
    out = capsys.readouterr().out
    assert "N-MNIST data pipeline, 20 training files" in out
    names = ["spikeflow (no cache)", "spikeflow (cached)"]
    if "tonic: unavailable" not in out:
        assert "check: tonic frames vs spikeflow's" in out and "(1 files)" in out
        names.append("tonic ToFrame")
    for name in names:
        assert any(line.strip().startswith(name) for line in out.splitlines()), name
    if "spikingjelly frames" in out:
        assert "max |diff| = 0 (1 files)" in out
