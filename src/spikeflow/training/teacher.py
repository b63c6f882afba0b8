"""The teacher of ``spikeflow train --teacher PATH`` (knowledge distillation).

``PATH`` is one of:

* a ``spikeflow train`` run folder (its ``best.pt``, else ``last.pt``) or one of its
  checkpoint files: the teacher is that run's network, rebuilt as ``spikeflow eval``
  rebuilds it. It reads each batch as its own run did (static images repeated over its
  own ``T``; frames, which must then be the student's: same dataset, ``T`` and
  ``split_by``), and its output ``[T, B, K]`` is read by its own run's readout; its
  trained weights, or with ``teacher_ema`` (``--teacher-ema``) the model EMA a
  ``--model-ema`` run kept;
* a TorchScript archive (``torch.jit.save``) or a module saved whole with
  ``torch.save(module)`` (unpickled: load only files you trust): a float network that
  takes the batch as the DataLoader yields it (``[B, C, H, W]`` images, ``[B, T, ...]``
  frames) and returns logits ``[B, K]``.

Anything else (a ``state_dict``, a missing file, a folder without a checkpoint) is
refused with an error that names the file and what it holds. The teacher runs in eval
mode, without gradients, on the same (mixed) inputs as the student.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from spikeflow.errors import ConfigurationError
from spikeflow.losses.distillation import student_logits
from spikeflow.training.train_config import TrainConfig

__all__ = ["Teacher", "load_teacher", "weights_digest"]


def weights_digest(module: nn.Module) -> str:
    """The SHA-256 of ``module``'s ``state_dict`` (names, dtypes, shapes and bytes): what
    a checkpoint records of its run's teacher, so that a resume can tell the same
    teacher, moved, from another one."""
    digest = hashlib.sha256()
    for name, value in module.state_dict().items():
        if isinstance(value, Tensor):
            flat = value.detach().cpu().contiguous().reshape(-1)
            digest.update(f"{name}|{flat.dtype}|{tuple(value.shape)}|".encode())
            digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class Teacher:
    """A frozen teacher: ``teacher(x)`` gives the logits ``[B, K]`` of a batch ``x`` as the
    DataLoader yields it (before the trainer makes it time-major).

    Attributes:
        module: the teacher's network (eval mode, no parameter requires a gradient).
        source: what was loaded, for messages (``"run runs/a/best.pt"``, ``"module t.pt"``).
        digest: :func:`weights_digest` of the module, as loaded.
    """

    def __init__(self, module: nn.Module, source: str, prepare: Callable[[Tensor], Tensor],
                 decode: Callable[[Tensor], Tensor]) -> None:  # fmt: skip
        self.module = module.eval()
        for parameter in module.parameters():
            parameter.requires_grad_(False)
        self.source = source
        self.digest = weights_digest(module)
        self._prepare = prepare
        self._decode = decode

    @torch.no_grad()
    def __call__(self, x: Tensor) -> Tensor:
        """The teacher's logits ``[B, K]`` (float32) of the batch ``x``."""
        self.module.eval()  # (a caller's model.train() on a container never reaches it)
        out = self.module(self._prepare(x))
        if not isinstance(out, Tensor):
            raise ConfigurationError(
                f"teacher ({self.source}) returned {type(out).__name__}, not a tensor of logits"
            )
        return self._decode(out).float()

    def to(self, device: torch.device) -> Teacher:
        """Move the teacher's network to ``device``; returns ``self``."""
        self.module.to(device)
        return self


def _is_torchscript(path: Path) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip with a ``code/`` folder)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name or name.startswith("code/") for name in archive.namelist())


def _module_logits(source: str) -> Callable[[Tensor], Tensor]:
    def decode(out: Tensor) -> Tensor:
        if out.dim() != 2:
            raise ConfigurationError(
                f"teacher ({source}) returned shape {tuple(out.shape)}; a module teacher must "
                "return logits [B, K] (a spiking teacher: pass its spikeflow run folder)"
            )
        return out

    return decode


def _run_teacher(path: Path, config: TrainConfig, device: torch.device) -> Teacher:
    """The network of the ``spikeflow train`` run at ``path``, checked against the
    student's run ``config``."""
    from spikeflow.training.config import resolved_readout
    from spikeflow.training.data import to_time_major
    from spikeflow.training.evaluation import read_run_checkpoint
    from spikeflow.training.trained_model import load_trained_model

    _, _, saved = read_run_checkpoint(path)
    if saved.dataset != config.dataset:
        raise ConfigurationError(
            f"--teacher {path}: the teacher was trained on dataset {saved.dataset!r}, this run "
            f"trains on {config.dataset!r}; a teacher must read the same inputs"
        )
    # (the same dataset: found where this run finds it, the teacher's run folder moved or not)
    data_dir = None if config.data_dir is None else str(config.data_dir)
    trained = load_trained_model(
        path, data_dir=data_dir, device=str(device), ema=config.teacher_ema
    )
    taught = trained.config
    source = f"run {trained.checkpoint}" + (" (its model EMA)" if config.teacher_ema else "")
    if trained.static is False:  # frames [B, T, ...]: the student's batches must fit it
        for name in ("T", "split_by"):
            if getattr(taught, name) != getattr(config, name):
                raise ConfigurationError(
                    f"--teacher {path}: the teacher reads frames with {name} = "
                    f"{getattr(taught, name)!r}, this run makes them with {name} = "
                    f"{getattr(config, name)!r}; train the student with the same {name}"
                )
    readout = resolved_readout(taught)
    T, layout = taught.T, trained.static
    return Teacher(
        trained.model,
        source,
        lambda x: to_time_major(x, T, layout),  # type: ignore[arg-type]
        lambda out: student_logits(out, readout),
    )


def _ema_checkpoint(path: Path) -> Path:
    """``path``, a spikeflow checkpoint file, for ``--teacher-ema`` (which reads its
    ``model_ema``); anything else is refused by name."""
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:
        loaded = None
    if not (isinstance(loaded, dict) and "format" in loaded and "config" in loaded):
        raise ConfigurationError(
            f"--teacher-ema reads the model EMA of a spikeflow train run; --teacher {path} "
            "is no run folder or checkpoint: leave out --teacher-ema"
        )
    return path


def load_teacher(path: str | os.PathLike, config: TrainConfig, device: torch.device) -> Teacher:
    """The teacher ``path`` names (module docstring), on ``device``, for a student run of
    ``config`` (resolved).

    Raises:
        ConfigurationError: a missing path, a folder without a checkpoint, a file that is
            neither a spikeflow checkpoint, TorchScript nor a saved module (a
            ``state_dict`` is named as such), a run teacher whose dataset, ``T`` or
            ``split_by`` (frames) differ from the student's, or ``config.teacher_ema``
            for a teacher that is no run, or a run without a model EMA.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigurationError(f"--teacher {path} does not exist")
    if path.is_dir():
        return _run_teacher(path, config, device)
    if config.teacher_ema:  # (a checkpoint file's; TorchScript and modules have none)
        return _run_teacher(_ema_checkpoint(path), config, device)
    if _is_torchscript(path):
        module = torch.jit.load(str(path), map_location=device)
        source = f"TorchScript {path}"
        return Teacher(module, source, lambda x: x, _module_logits(source))
    try:
        loaded: Any = torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:
        raise ConfigurationError(
            f"--teacher {path} cannot be loaded as a checkpoint, TorchScript or saved module: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if isinstance(loaded, dict) and "format" in loaded and "config" in loaded:
        return _run_teacher(path, config, device)  # a spikeflow checkpoint file
    if isinstance(loaded, nn.Module):
        source = f"module {path}"
        return Teacher(loaded.to(device), source, lambda x: x, _module_logits(source))
    what = "a state_dict (weights without a network)" if isinstance(loaded, dict) else (
        f"a {type(loaded).__name__}"
    )  # fmt: skip
    raise ConfigurationError(
        f"--teacher {path} holds {what}; pass a spikeflow run folder or checkpoint, a "
        "TorchScript file (torch.jit.save) or a whole module saved with torch.save(model)"
    )
