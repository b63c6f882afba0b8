"""Checkpoints: atomic writes, random-number-generator states, safe loading.

A checkpoint holds only tensors and plain containers of numbers and strings, so it
loads with ``torch.load(path, weights_only=True)`` (no pickled code runs). It is written
to a temporary file in the same directory and moved into place with ``os.replace``, so
a crash or Ctrl-C while saving never leaves a truncated ``last.pt``.

A run's ``best.pt`` is written before its ``last.pt`` (:func:`write_run_checkpoint`),
and a checkpoint inside an epoch holds every process's running sums of that epoch
(:func:`epoch_state_for_rank`).
"""

from __future__ import annotations

import itertools
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spikeflow._files import give_mode, load_weights_only, lock_while_writing
from spikeflow.errors import ConfigurationError

__all__ = [
    "CHECKPOINT_FORMAT",
    "capture_rng_state",
    "epoch_state_for_rank",
    "epoch_state_payload",
    "load_checkpoint",
    "load_weights",
    "restore_rng_state",
    "save_checkpoint",
    "write_run_checkpoint",
]

CHECKPOINT_FORMAT = "spikeflow-train-checkpoint-v1"


def capture_rng_state() -> dict[str, Any]:
    """The states of torch's (CPU and CUDA), numpy's and Python's global generators, as
    tensors and lists (loadable with ``weights_only=True``)."""
    np_state = np.random.get_state()  # noqa: NPY002 - the global state user code draws from
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_version, "internal": list(py_internal), "gauss": py_gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Undo :func:`capture_rng_state`: set every global generator to ``state``."""
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state((  # noqa: NPY002
        "MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
        np_state["has_gauss"], np_state["cached_gaussian"],
    ))  # fmt: skip
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``payload`` to ``path`` atomically (temporary file + fsync + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            # locked until renamed: another run's cleanup never takes it for a dead
            # write's, however long this one takes (remove_stale_temporaries)
            locked = lock_while_writing(handle.fileno())
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
            give_mode(tmp_name, path)  # not mkstemp's 0o600, which hides it from others
            if locked:  # (POSIX renames an open file)
                os.replace(tmp_name, path)
        if not locked:
            os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def write_run_checkpoint(payload: dict[str, Any], folder: Path, best: bool) -> Path:
    """Write a run's ``folder/last.pt`` and, when ``best``, first its ``folder/best.pt``.

    ``best.pt`` is written atomically, then ``last.pt`` is put in place atomically as a
    hard link to it (a second write where the file system has no hard links; each is
    later replaced, never rewritten). A process killed between the two leaves the new
    ``best.pt`` and the previous ``last.pt``: the best weights are never lost, and a
    resume from that ``last.pt`` redoes the epoch and writes the same ``best.pt``. Returns
    the ``last.pt`` path.
    """
    last = folder / "last.pt"
    if not best:
        return save_checkpoint(payload, last)
    written = save_checkpoint(payload, folder / "best.pt")
    tmp = folder / ".last.pt.link"
    tmp.unlink(missing_ok=True)
    try:
        os.link(written, tmp)  # the same bytes under a second name
        os.replace(tmp, last)
    except OSError:  # a file system without hard links: write it again
        tmp.unlink(missing_ok=True)
        save_checkpoint(payload, last)
    return last


def epoch_state_payload(states: list[dict[str, Any]]) -> dict[str, Any]:
    """The checkpoint entries of an unfinished epoch's running sums, from each process's
    ``{"epoch_sums": ..., "monitor": ...}`` (rank order): ``epoch_sums`` and ``monitor``
    hold the sums over the processes, ``rank_epoch_state`` each process's own (which a
    resume with as many processes gives back to each)."""
    sums: dict[str, Any] = {}
    monitor: dict[str, dict[str, float | int]] = {}
    for state in states:
        for key, value in state["epoch_sums"].items():
            if isinstance(value, list):  # per-output sums (a regression's); [] where none
                before = sums.get(key, [])
                sums[key] = [a + b for a, b in itertools.zip_longest(before, value, fillvalue=0.0)]
            else:
                sums[key] = sums.get(key, 0.0) + value
        for name, values in state["monitor"].items():
            into = monitor.setdefault(name, dict.fromkeys(values, 0))
            for key, value in values.items():
                # neurons: the layer's size, 0 on a process that saw no sample.
                into[key] = max(into[key], value) if key == "neurons" else into[key] + value
    return {"epoch_sums": sums, "monitor": monitor, "rank_epoch_state": list(states)}


def epoch_state_for_rank(
    payload: dict[str, Any], rank: int, world_size: int
) -> tuple[dict[str, float], dict[str, Any]] | None:
    """The running sums (``epoch_sums``, ``monitor`` state) process ``rank`` of
    ``world_size`` continues an unfinished epoch with; ``None`` for a complete epoch.

    A checkpoint written by as many processes gives each its own sums. Otherwise (another
    process count, or a checkpoint of an older spikeflow, which holds only process 0's
    sums) process 0 takes the checkpoint's sums over all its processes and the others
    start from zero, so the sums reduced at the end of the epoch count each step done
    before the checkpoint once.
    """
    if not payload["epoch_sums"]:
        return None
    per_rank = payload.get("rank_epoch_state") or []
    if len(per_rank) == world_size:
        return dict(per_rank[rank]["epoch_sums"]), dict(per_rank[rank]["monitor"])
    if rank == 0:
        return dict(payload["epoch_sums"]), dict(payload["monitor"])
    return {}, {}


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a training checkpoint with ``weights_only=True``.

    Raises:
        ConfigurationError: the file is missing or is not a spikeflow training checkpoint.
    """
    path = Path(path)
    payload = load_weights_only(path, "checkpoint", "truncated or damaged?", map_location)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ConfigurationError(
            f"{path} is not a spikeflow training checkpoint (expected format {CHECKPOINT_FORMAT!r})"
        )
    missing = [key for key in _KEYS if key not in payload]
    if missing:
        raise ConfigurationError(f"checkpoint {path} lacks {missing}: it is damaged or edited")
    return payload


#: What every checkpoint written by the trainer holds.
_KEYS = ("config", "epoch", "step", "global_step", "model", "optimizer", "scheduler", "scaler",
         "rng", "world_size", "epoch_sums", "monitor", "history", "best")  # fmt: skip


def load_weights(
    model: torch.nn.Module, payload: dict[str, Any], source: object, ema: bool = False
) -> None:
    """Load ``payload``'s weights into ``model`` (built from the payload's config); with
    ``ema``, the weights' moving average that a ``--model-ema`` run kept instead.

    Raises:
        ConfigurationError: they do not fit (a checkpoint of another model or spikeflow
            version), or ``ema`` for a run without a model EMA; the message names
            ``source`` (the checkpoint file or folder).
    """
    state = payload["model"]
    if ema:
        held = payload.get("model_ema") or {}
        if "module" not in held:
            raise ConfigurationError(
                f"{source}: the run was trained without --model-ema, so its checkpoint "
                "holds no EMA weights (leave out --ema / ema=True)"
            )
        state = held["module"]
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:400]
        raise ConfigurationError(
            f"{source}: the checkpoint's weights do not fit the {type(model).__name__} built "
            f"from its config: {detail}"
        ) from exc
