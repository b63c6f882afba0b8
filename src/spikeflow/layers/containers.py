"""Containers that run per-step modules on time-major sequences.

The modules inside a container are *per-step* modules: torch layers, or spikeflow
modules created with ``step_mode='s'``. The container owns the time dimension:

* :class:`SeqToANNContainer` folds time into the batch (``[T, B, ...]`` →
  ``[T*B, ...]`` → modules → ``[T, B, ...]``): one call for the whole sequence, the
  fast path, correct for stateless modules only.
* :class:`MultiStepContainer` calls the modules once per step and stacks the outputs:
  the path for modules with carried state (spiking neurons in single-step mode).
* :class:`StepModeContainer` has a ``step_mode`` like any other spikeflow layer: in
  multi-step mode it folds (``stateless=True``) or steps (``stateless=False``), in
  single-step mode it calls the modules directly.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from torch import Tensor, nn

from spikeflow.base import SequenceOnly, StepMode, StepModule, check_time_major
from spikeflow.errors import ConfigurationError
from spikeflow.layers._time import check_inner_modules, fold_time, run_steps, stepping_memory

__all__ = ["MultiStepContainer", "SeqToANNContainer", "StepModeContainer"]


class _MultiStepOnly(SequenceOnly):
    """A sequence container: its ``step_mode`` is always ``'m'``."""

    owns_children_time = True
    multi_step_only = True
    sequence_reason = "a sequence container"
    sequence_hint = "Use StepModeContainer for a container that can switch to single-step mode."


class SeqToANNContainer(_MultiStepOnly, nn.Sequential):
    """Apply stateless modules to a sequence by folding time into the batch.

    ``[T, B, ...]`` is reshaped to ``[T*B, ...]``, passed through the modules in order
    (like :class:`torch.nn.Sequential`), and the output is reshaped back to
    ``[T, B, ...]``. This equals applying the modules to every step separately for
    modules that treat samples independently; batch norm in training mode normalises
    over all ``T*B`` samples.

    Args:
        *modules: per-step modules (torch layers, or spikeflow modules with
            ``step_mode='s'``); modules with carried state are rejected.

    Raises:
        ShapeError: the input has fewer than 2 dims.
        ConfigurationError: a module carries state or is in multi-step mode.

    Example::

        >>> conv = SeqToANNContainer(nn.Conv2d(2, 8, 3, padding=1), nn.BatchNorm2d(8))
        >>> conv(torch.rand(4, 16, 2, 32, 32)).shape   # [T, B, C, H, W]
        torch.Size([4, 16, 8, 32, 32])
    """

    def __init__(self, *modules: nn.Module) -> None:
        super().__init__(*modules)
        check_inner_modules(type(self).__name__, self.children(), stateless=True)

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, ...]`` → ``[T, B, ...]``, the modules run once on ``[T*B, ...]``."""
        check_time_major(x, type(self).__name__, single_step=not self.multi_step_only)
        check_inner_modules(type(self).__name__, self.children(), stateless=True)
        return fold_time(super().forward, x)


class MultiStepContainer(_MultiStepOnly, nn.Sequential):
    """Run per-step modules step by step over a sequence and stack the outputs.

    For every ``t`` the modules run in order on ``x[t]`` (``[B, ...]``); the outputs are
    stacked to ``[T, B, ...]``. Use it for modules with carried state in single-step
    mode. Like a multi-step spikeflow layer, each call starts from the initial state:
    memory modules inside that are not streaming are reset, run with streaming on for
    the ``T`` steps, and reset again. Memory modules that are already streaming (e.g.
    inside ``spikeflow.functional.streaming(net)``) keep their state between calls, so
    chunked input gives the same output as one long call.

    Args:
        *modules: per-step modules (torch layers, or spikeflow modules with
            ``step_mode='s'``).

    Raises:
        ShapeError: the input has fewer than 2 dims.
        ConfigurationError: a spikeflow module inside is in multi-step mode.

    Example::

        >>> lif = MultiStepContainer(LIFNode(step_mode="s"))
        >>> lif(torch.rand(8, 4, 100)).shape            # [T, B, N]
        torch.Size([8, 4, 100])
    """

    def __init__(self, *modules: nn.Module) -> None:
        super().__init__(*modules)
        check_inner_modules(type(self).__name__, self.children(), stateless=False)

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, ...]`` → ``[T, B, ...]``, the modules called once per step."""
        check_time_major(x, type(self).__name__, single_step=not self.multi_step_only)
        check_inner_modules(type(self).__name__, self.children(), stateless=False)
        with stepping_memory(self.children()):
            return run_steps(super().forward, x)


class StepModeContainer(StepModule, nn.Sequential):
    """A container with a ``step_mode``, for any per-step modules.

    * multi-step (``'m'``, input ``[T, B, ...]``): with ``stateless=True`` the modules
      run once with time folded into the batch (as :class:`SeqToANNContainer`); with
      ``stateless=False`` they run once per step (as :class:`MultiStepContainer`).
    * single-step (``'s'``, input ``[B, ...]``): the modules are called directly.

    Args:
        *modules: per-step modules (torch layers, or spikeflow modules with
            ``step_mode='s'``).
        stateless: required, keyword-only. ``True`` if no module carries state from
            one step to the next (folding is then correct and faster); ``False``
            for modules with carried state (spiking neurons).
        step_mode: ``'m'`` (default) or ``'s'``.

    Example::

        >>> block = StepModeContainer(nn.Conv2d(2, 8, 3), nn.ReLU(), stateless=True)
        >>> block(torch.rand(4, 16, 2, 32, 32)).shape
        torch.Size([4, 16, 8, 30, 30])
        >>> block.step_mode = "s"
        >>> block(torch.rand(16, 2, 32, 32)).shape
        torch.Size([16, 8, 30, 30])
    """

    owns_children_time = True

    def __init__(self, *modules: nn.Module, stateless: bool, step_mode: StepMode = "m") -> None:
        super().__init__(*modules)
        if not isinstance(stateless, bool):
            raise ConfigurationError(
                f"stateless must be True or False, got {stateless!r} (note that it is "
                "keyword-only: StepModeContainer(*modules, stateless=...))"
            )
        self.stateless = stateless
        self.step_mode = step_mode
        check_inner_modules(type(self).__name__, self.children(), stateless=stateless)

    def __getitem__(self, idx: Any) -> Any:
        """A module, or (for a slice) a StepModeContainer with the same settings."""
        if isinstance(idx, slice):
            items = list(self._modules.items())[idx]
            return type(self)(
                OrderedDict(items), stateless=self.stateless, step_mode=self.step_mode
            )
        return super().__getitem__(idx)

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, ...]`` (multi-step) or ``[B, ...]`` (single-step) through the modules."""
        name = type(self).__name__
        check_inner_modules(name, self.children(), stateless=self.stateless)
        if self.step_mode == "s":
            return super().forward(x)
        check_time_major(x, name)
        if self.stateless:
            return fold_time(super().forward, x)
        with stepping_memory(self.children()):
            return run_steps(super().forward, x)

    def extra_repr(self) -> str:
        return f"stateless={self.stateless}, step_mode={self.step_mode}"
