"""Where a resumed or restarted ``spikeflow train`` continues: a torchrun restart's own
``last.pt``, and a resume that would rewind a run refused."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from spikeflow.errors import ConfigurationError
from spikeflow.training.resume import checkpoint_position, describe_position

__all__ = ["continues", "elastic_restart_checkpoint", "refuse_rewind"]


def elastic_restart_checkpoint(
    resume: Path | None,
    payload: dict[str, Any] | None,
    overrides: dict[str, Any],
    file_config: Any,
) -> tuple[Path, dict[str, Any]] | None:
    """On a torchrun restart (``TORCHELASTIC_RESTART_COUNT > 0``, e.g. after a node
    failure with ``--max-restarts``), the ``last.pt`` (path and payload) the first
    attempt wrote into ``--output-dir``, so the group continues the run instead of
    starting it again.

    Where the launch has an identity (its rendezvous id,
    :func:`~spikeflow.training.run_folder.launch_identity`), that ``last.pt`` is taken
    only where this launch wrote it: one already there (a run ``--overwrite`` replaces,
    the source of a rewind) is not. With a static rendezvous (no identity), a command
    with ``--resume`` takes it where it continues the resumed run further
    (:func:`continues`), one without takes it as it is. Otherwise it is ``None``, and
    the command runs as given (a folder the first attempt of an identified launch
    claimed but wrote no checkpoint into is then its own to replace).
    """
    from spikeflow.training.checkpoint import load_checkpoint
    from spikeflow.training.run_folder import is_torchrun_restart, launch_identity

    if not is_torchrun_restart():
        return None
    out = overrides.get("output_dir") or getattr(file_config, "output_dir", None)
    if out is None and resume is not None:  # a resume writes into its checkpoint's folder
        out = resume.parent
    last = None if out is None else Path(out) / "last.pt"
    if last is None or not last.is_file():
        return None
    if resume is not None and os.path.samefile(resume, last):
        return None  # the checkpoint given is that last.pt
    try:
        written = load_checkpoint(last)
    except ConfigurationError:
        if payload is not None:  # the --resume checkpoint stands
            return None
        raise
    launch = launch_identity()
    if launch is not None and written.get("launch") != launch:
        return None  # not this launch's: the command runs as given
    if launch is None and payload is not None and not continues(written, payload):
        return None
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"torchrun restart: continuing from {last}", file=sys.stderr)
    return last, written


def continues(later: dict[str, Any], earlier: dict[str, Any]) -> bool:
    """Whether checkpoint ``later`` continues the run of checkpoint ``earlier`` further:
    a later (epoch, step), the same config up to the runtime options (both read as
    configs, so a key a newer spikeflow added with its default matches), and
    ``earlier``'s history as the start of its own."""
    from spikeflow.training.config import RUNTIME_FIELDS, config_from_dict, config_to_dict

    def run_config(payload: dict[str, Any]) -> dict[str, Any]:
        config = config_to_dict(config_from_dict(payload["config"]))  # stored values as they are
        return {k: v for k, v in config.items() if k not in RUNTIME_FIELDS}

    rows = list(earlier["history"])
    try:
        same_config = run_config(later) == run_config(earlier)
    except ConfigurationError:  # a config this spikeflow cannot read: another run's
        return False
    return (
        checkpoint_position(later) > checkpoint_position(earlier)
        and same_config
        and repr(list(later["history"])[: len(rows)]) == repr(rows)  # repr: NaN == NaN
    )


def refuse_rewind(
    checkpoint: Path, payload: dict[str, Any], output_dir: Path, overwrite: bool
) -> None:
    """A resume from an older checkpoint of a run (its ``best.pt`` of an earlier epoch)
    into that run's own folder would replace its newer ``last.pt`` and cut its logs
    back: refused unless ``--overwrite``. "Newer" compares the epoch and step the two
    checkpoints hold (a ``best.pt`` of the last epoch is no rewind); a resume into
    another folder is checked by the trainer."""
    from spikeflow.training.checkpoint import load_checkpoint

    last = output_dir / "last.pt"
    if overwrite or not last.is_file() or output_dir.resolve() != checkpoint.parent.resolve():
        return
    if os.path.samefile(last, checkpoint):
        return
    resumed_at = checkpoint_position(payload)
    try:
        last_at: tuple[int, int] | None = checkpoint_position(load_checkpoint(last))
    except ConfigurationError:  # unreadable: it may be newer, so it is kept
        last_at = None
    if last_at is not None and last_at <= resumed_at:
        return
    newer = f"newer {last}" + ("" if last_at is None else f" ({describe_position(last_at)})")
    raise ConfigurationError(
        f"--resume {checkpoint} ({describe_position(resumed_at)}) would continue in "
        f"{output_dir}, replacing its {newer} and cutting its logs back to "
        f"{checkpoint.name}'s epoch; pass another --output-dir to branch off, or "
        "--overwrite to rewind the run"
    )
