"""A digest of what a training run writes (imported by tests/test_train_golden.py, not
collected): metrics.csv and layers.csv, and every number of its checkpoints, so that a
change to the trainer's step can be shown to leave every logged and saved number as it
was, bit for bit.

Print the digests of the current code (the command that produced the golden values in
tests/test_train_golden.py)::

    OMP_NUM_THREADS=1 PYTHONPATH=src python3 tests/run_digest.py
"""

from __future__ import annotations

import hashlib
import os
import signal
import struct
from pathlib import Path
from typing import Any

import torch

from train_runs import tiny  # (run as a script: tests/ is the first path)

#: The run digested: the tiny digits run (tests/train_runs.py) with dropout (so that the
#: forward draws from the global generator the checkpoints save) on one thread.
GOLDEN_RUN = {"epochs": 2, "threads": 1, "seed": 3,
              "model_kwargs": {"channels": 8, "hidden": 32, "dropout": 0.3}}  # fmt: skip
#: The keys of a checkpoint left out: where the run was written and who launched it.
_NOT_NUMBERS = ("config", "launch")


def _feed(h: Any, value: Any) -> None:
    """Hash ``value`` (nested dicts, lists, tensors, numbers, strings) canonically:
    dict keys sorted, tensors by dtype, shape and bytes, floats by their bits."""
    if isinstance(value, dict):
        h.update(b"{")
        for key in sorted(value, key=str):
            if key == "epoch_time_s":  # (a wall-clock time)
                continue
            h.update(repr(key).encode())
            _feed(h, value[key])
        h.update(b"}")
    elif isinstance(value, (list, tuple)):
        h.update(b"[")
        for item in value:
            _feed(h, item)
        h.update(b"]")
    elif isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous().reshape(-1)
        h.update(f"T{t.dtype}{tuple(value.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(value, float):
        h.update(b"f" + struct.pack("<d", value))
    else:
        h.update(f"{type(value).__name__}:{value!r}".encode())


def checkpoint_digest(path: Path) -> str:
    """SHA-256 of every number in the checkpoint ``path`` (not its config, launch, epoch
    times, or entries left empty)."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    h = hashlib.sha256()
    # (an empty entry is a feature the run does not use: a feature added later leaves
    # the digest of a run without it as it was)
    _feed(h, {k: v for k, v in payload.items() if k not in _NOT_NUMBERS and v != {}})
    return h.hexdigest()


def logs_digest(run: Path) -> str:
    """SHA-256 of metrics.csv (without its epoch_time_s column) and layers.csv."""
    h = hashlib.sha256()
    lines = (run / "metrics.csv").read_text().splitlines()
    column = lines[0].split(",").index("epoch_time_s")
    for line in lines:
        h.update(",".join(c for i, c in enumerate(line.split(",")) if i != column).encode())
    h.update((run / "layers.csv").read_bytes())
    return h.hexdigest()


class _CtrlC:
    """A real SIGINT (Ctrl-C) at the end of step ``step`` of epoch ``epoch``."""

    def __init__(self, epoch: int, step: int) -> None:
        self.epoch, self.step = epoch, step

    def on_step_end(self, trainer: Any, epoch: int, step: int, loss: float) -> None:
        if (epoch, step) == (self.epoch, self.step):
            os.kill(os.getpid(), signal.SIGINT)


def golden_digests(tmp: Path) -> dict[str, str]:
    """Train :data:`GOLDEN_RUN` whole, and again stopped by Ctrl-C in its second epoch
    then resumed; the digests of what each wrote (``cut`` is the Ctrl-C checkpoint)."""
    from spikeflow.training import Trainer, config_for_resume, load_checkpoint

    Trainer(tiny(tmp, "full", **GOLDEN_RUN), log=None).fit()
    out = {
        "full logs": logs_digest(tmp / "full"),
        "full last.pt": checkpoint_digest(tmp / "full" / "last.pt"),
        "full best.pt": checkpoint_digest(tmp / "full" / "best.pt"),
    }
    Trainer(tiny(tmp, "cut", **GOLDEN_RUN), callbacks=[_CtrlC(1, 2)], log=None).fit()
    out["cut last.pt"] = checkpoint_digest(tmp / "cut" / "last.pt")
    payload = load_checkpoint(tmp / "cut" / "last.pt")
    Trainer(config_for_resume(payload, {}), resume=payload, log=None).fit()
    out["resumed logs"] = logs_digest(tmp / "cut")
    out["resumed last.pt"] = checkpoint_digest(tmp / "cut" / "last.pt")
    return out


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        print(f"torch {torch.__version__}, cpu {torch.backends.cpu.get_cpu_capability()}")
        for name, digest in golden_digests(Path(folder)).items():
            print(f"{name!r}: {digest!r},")
