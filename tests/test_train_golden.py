"""The trainer's logs and checkpoints, bit for bit, against digests of a run made before
the step's bookkeeping was made cheaper (the monitor's hooks, the RNG capture, the loss
checks, the evaluation's membrane sums): every number a run logs or saves, its Ctrl-C
checkpoint and the run resumed from it are unchanged.

The golden digests were printed by spikeflow at commit 534bef2 (before those changes)
with ``OMP_NUM_THREADS=1 PYTHONPATH=src python3 tests/run_digest.py`` (torch
2.13.0+cpu, AVX512; the digest of this file's version, which leaves out a
checkpoint's empty entries, run on 534bef2's src). Floating-point results may differ in
their last bits with another torch or another CPU instruction set, so the comparison
runs only where they match; the resumed run equals the uninterrupted one everywhere.
"""

from __future__ import annotations

import pytest
import torch

from run_digest import golden_digests

pytest.importorskip("sklearn", reason="the digits need scikit-learn (the 'examples' extra)")

#: Where the golden digests were made.
GOLDEN_PLATFORM = ("2.13.0+cpu", "AVX512")
GOLDEN = {
    "full logs": "b266b9ac6f133d7a1ff2a813680213be31f855f4a2857329b41f03d00367ea2f",
    "full last.pt": "5b44c18d4430dc7b64d5909ec19dcc3dcba74e9965667c3f6fc5f97e46acca45",
    "full best.pt": "5b44c18d4430dc7b64d5909ec19dcc3dcba74e9965667c3f6fc5f97e46acca45",
    "cut last.pt": "fc86ca82f4c1d976689d02f15546f45b2f094bcc30f5e948dff51db182107476",
    "resumed logs": "b266b9ac6f133d7a1ff2a813680213be31f855f4a2857329b41f03d00367ea2f",
    "resumed last.pt": "5b44c18d4430dc7b64d5909ec19dcc3dcba74e9965667c3f6fc5f97e46acca45",
}


def test_logs_and_checkpoints_are_those_of_the_code_before_the_cheaper_step(tmp_path):
    digests = golden_digests(tmp_path)
    # Ctrl-C mid-epoch, resumed: what the uninterrupted run wrote (on any platform).
    assert digests["resumed logs"] == digests["full logs"]
    assert digests["resumed last.pt"] == digests["full last.pt"]
    platform = (torch.__version__, torch.backends.cpu.get_cpu_capability())
    if platform != GOLDEN_PLATFORM:
        pytest.skip(f"golden digests made with torch/CPU {GOLDEN_PLATFORM}, not {platform}")
    assert digests == GOLDEN
