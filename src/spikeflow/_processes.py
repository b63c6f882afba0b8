"""The torch.distributed group a local learning rule (spikeflow.learn) or a detection loss
synchronises over."""

from __future__ import annotations

import torch.distributed as dist

from spikeflow.errors import ConfigurationError


def check_process_group(owner: str, group: object) -> dist.ProcessGroup | None:
    """``group`` if it is a process group (or one backend's, such as
    ``ProcessGroupGloo``) or None; else a ConfigurationError naming ``owner``."""
    if group is not None and not callable(getattr(group, "allreduce", None)):
        raise ConfigurationError(
            f"{owner}: process_group must be a torch.distributed ProcessGroup or None, got "
            f"{type(group).__name__}"
        )
    return group  # type: ignore[return-value]


def processes_to_sync(
    enabled: bool, group: dist.ProcessGroup | None
) -> tuple[bool, dist.ProcessGroup | None]:
    """Whether to synchronise (``enabled`` and more than one process in ``group``, or in
    the default group where ``group`` is None and torch.distributed is initialised),
    and the group (None: the default one)."""
    if not enabled or not dist.is_available():
        return False, None
    if group is not None:
        return dist.get_world_size(group) > 1, group
    if dist.is_initialized():
        return dist.get_world_size() > 1, None
    return False, None
