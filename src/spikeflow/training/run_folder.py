"""A run's output folder: checked (and created) before any work, reserved atomically
for the default name, told apart from an earlier run's, cleared by ``--overwrite``, and
seeded with the source run's history by a resume written elsewhere."""

from __future__ import annotations

import os
import shutil
import socket
import time
from datetime import datetime
from pathlib import Path

from spikeflow._files import being_written
from spikeflow.errors import ConfigurationError

__all__ = [
    "LAUNCH_FILE",
    "RESULT_FILES",
    "RUN_OUTPUTS",
    "carry_history",
    "check_output_dir",
    "claim_for_launch",
    "claimed_by_this_launch",
    "earlier_run_files",
    "is_torchrun_restart",
    "launch_identity",
    "remove_empty_folders",
    "remove_run_outputs",
    "remove_stale_temporaries",
    "reserve_default_output_dir",
]

#: The results of a run in its output_dir: any of them there means an earlier run (a
#: folder holding only the config.toml of a run that failed in its first epoch does not).
RESULT_FILES = ("last.pt", "best.pt", "metrics.csv", "layers.csv")
#: Names the torchrun launch that uses the folder (see :func:`launch_identity`).
LAUNCH_FILE = ".spikeflow-launch"
#: Everything a run writes there, which --overwrite removes first.
RUN_OUTPUTS = (*RESULT_FILES, "config.toml", "learning_curves.png", "firing_rates.png",
               "raster.png", "tensorboard", LAUNCH_FILE)  # fmt: skip
#: The temporary files a run writes its outputs through (a checkpoint or log: a unique
#: ``.<name>.*.tmp``, then a rename; a plot ``.<stem>.*.tmp<suffix>``; the hard link of
#: ``last.pt`` to ``best.pt``; a resume's copies), which a killed run leaves behind.
TEMPORARY_PATTERNS = (
    *(f".{name}.*.tmp" for name in (*RESULT_FILES, "config.toml")),
    *(f".{Path(name).stem}.*.tmp{Path(name).suffix}"
      for name in ("learning_curves.png", "firing_rates.png", "raster.png")),
    *(f".{name}.copy" for name in RESULT_FILES),
    ".last.pt.link", f"{LAUNCH_FILE}.tmp",
)  # fmt: skip
#: Age (seconds) after which such a file counts as left by a killed process: a live
#: write renews its file's modification time while it writes, and renames it at once.
STALE_TEMPORARY_S = 60.0


def is_torchrun_restart() -> bool:
    """Whether this process belongs to a restarted attempt of a torchrun launch
    (``TORCHELASTIC_RESTART_COUNT`` > 0, e.g. after a node failure with
    ``--max-restarts``)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT") or 0) > 0


def launch_identity() -> str | None:
    """Under torchrun, what the restarts of one launch share and no other launch has:
    the rendezvous id, which torchrun draws per launch unless ``--rdzv-id`` is given;
    with a static rendezvous (id ``"none"``: ``--master-port``) on one node, the
    torchrun agent's process (node, pid and start time: the workers' parent, which
    outlives their restarts). ``None`` outside torchrun and for a static rendezvous
    over several nodes, whose agents share nothing."""
    if "TORCHELASTIC_RESTART_COUNT" not in os.environ:
        return None
    run_id = os.environ.get("TORCHELASTIC_RUN_ID", "")
    if run_id and run_id != "none":
        return f"rdzv:{run_id}"
    if os.environ.get("WORLD_SIZE", "1") != os.environ.get("LOCAL_WORLD_SIZE", "1"):
        return None
    agent = os.getppid()
    try:  # field 22 of /proc/<pid>/stat: the start time (a reused pid differs there)
        started = Path(f"/proc/{agent}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        started = "?"
    return f"agent:{socket.gethostname()}:{agent}:{started}"


def claim_for_launch(folder: Path) -> None:
    """Record in ``folder`` the torchrun launch writing into it (nothing outside torchrun),
    so that a restart of the launch takes what its first attempt wrote for its own."""
    launch = launch_identity()
    if launch is not None:
        tmp = folder / f"{LAUNCH_FILE}.tmp"
        tmp.write_text(launch)
        os.replace(tmp, folder / LAUNCH_FILE)


def claimed_by_this_launch(folder: Path) -> bool:
    """Whether this is a torchrun restart and ``folder`` was claimed by an earlier
    attempt of its launch."""
    launch = launch_identity()
    if launch is None or not is_torchrun_restart():
        return False
    try:
        return (folder / LAUNCH_FILE).read_text() == launch
    except OSError:
        return False


def earlier_run_files(folder: Path) -> list[str]:
    """The result files of an earlier run in ``folder`` (none when it does not exist)."""
    return [name for name in RESULT_FILES if (folder / name).exists()]


def remove_stale_temporaries(folder: Path, older_than_s: float = STALE_TEMPORARY_S) -> list[str]:
    """Delete the temporary files (:data:`TEMPORARY_PATTERNS`) that a run killed while
    writing left in ``folder`` (a partial checkpoint is as large as a checkpoint, and a
    job preempted at every epoch would leave one each time), when at least
    ``older_than_s`` seconds old and not locked by a live write (a checkpoint's, however
    long it takes; :func:`~spikeflow._files.lock_while_writing`). Other files are left
    alone, and so is one that cannot be deleted. Returns the names deleted."""
    now, removed = time.time(), []
    for pattern in TEMPORARY_PATTERNS:
        for path in folder.glob(pattern):
            try:
                old = path.is_file() and now - path.lstat().st_mtime >= older_than_s
                if old and not being_written(path):  # a checkpoint write holds a lock
                    path.unlink()
                    removed.append(path.name)
            except OSError:  # removed meanwhile, or not ours to delete
                continue
    return sorted(removed)


def remove_run_outputs(folder: Path) -> None:
    """Delete what an earlier run wrote into ``folder`` (its other files stay)."""
    for name in RUN_OUTPUTS:
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def carry_history(source: Path, dest: Path, best_epoch: int) -> None:
    """A resume written into another folder starts from the source run's logs and best
    checkpoint (the logs are then cut back to the resumed epoch). ``best.pt`` is copied
    only when it holds ``best_epoch``, the best the resumed checkpoint records: a later
    one, or one left from epochs a rewind discarded, is not the new run's past."""
    from spikeflow.training.checkpoint import load_checkpoint

    if source.resolve() == dest.resolve():
        return
    for name in ("metrics.csv", "layers.csv", "best.pt"):
        if not (source / name).is_file() or (dest / name).exists():
            continue
        if name == "best.pt":
            try:
                if int(load_checkpoint(source / name)["epoch"]) != best_epoch:
                    continue
            except ConfigurationError:  # damaged: not carried (the resume writes its own)
                continue
        tmp = dest / f".{name}.copy"
        shutil.copyfile(source / name, tmp)
        with open(tmp, "rb+") as handle:  # on disk before the rename (as every write here)
            os.fsync(handle.fileno())
        os.replace(tmp, dest / name)


def reserve_default_output_dir(dataset: str) -> tuple[str, Path]:
    """Create ``runs/<dataset>-<date-time>`` (``-2``, ``-3``, ... when taken) atomically,
    so two runs started in the same second never share a folder. Returns it and the
    topmost folder created (``runs`` itself where it was missing), which a run refused
    later removes again while empty."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{dataset.lower()}-{stamp}"
    check_output_dir(base, create=False)
    top = base.parent if not base.parent.exists() else None
    candidate, n = base, 1
    while True:
        try:
            candidate.mkdir(parents=True)
            return str(candidate), top or candidate
        except FileExistsError:
            n += 1
            candidate = base.with_name(f"{base.name}-{n}")
        except OSError as exc:
            raise ConfigurationError(f"cannot create the output folder {candidate}: {exc}") from exc


def check_output_dir(folder: Path, create: bool = True) -> Path | None:
    """Raise unless ``folder`` is (or can be made) a folder this process can write to:
    said before any data is read or any model built.

    ``create``: make ``folder`` (and its missing parents) now, so that a name the file
    system refuses (too long, under ``/proc``) is refused here too. Returns the topmost
    folder it created (``None`` when ``folder`` existed or ``create`` is false), which a
    run refused later removes again while it is empty (:func:`remove_empty_folders`).

    Raises:
        ConfigurationError: ``folder`` is a file or lies under one, is not writable, or
            cannot be created; the message names ``output_dir`` and ``folder``.
    """
    try:
        if folder.exists() and not folder.is_dir():
            raise ConfigurationError(f"output_dir {folder} exists and is not a folder")
        probe = folder
        while not probe.exists():
            if probe.parent == probe:
                break
            probe = probe.parent
        if probe.exists() and not probe.is_dir():
            raise ConfigurationError(f"output_dir {folder}: {probe} is a file, not a folder")
        if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
            raise ConfigurationError(f"output_dir {folder}: {probe} is not writable")
        if not create or probe == folder:
            return None
        top = folder  # the first missing folder on the way down from ``probe``
        while top.parent != probe:
            top = top.parent
        folder.mkdir(parents=True, exist_ok=True)
        return top
    except OSError as exc:  # a name too long, a file system that refuses folders, ...
        raise ConfigurationError(
            f"output_dir {folder} cannot be created ({exc.strerror or exc}); choose "
            "another --output-dir"
        ) from exc


def remove_empty_folders(folder: Path, top: Path) -> None:
    """Remove ``folder`` and its parents up to ``top`` (included) while they are empty:
    what :func:`check_output_dir` created for a run that was then refused."""
    path = folder
    while True:
        try:
            path.rmdir()  # only if empty
        except OSError:
            return
        if path == top or path.parent == path:
            return
        path = path.parent
