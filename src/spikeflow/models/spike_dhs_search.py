"""SpikeDHS's spiking unit and its surrogate gradient search (DGS, Che et al., NeurIPS
2022): :class:`DGSUnit`, ``LIF(Σ_i BN_i(conv_i(x_i)))``, with two copies of its
convolutions and batch norms for its Dspike surrogate's temperature lowered and raised,
mixed by the softmax of three architecture weights during a search stage. The cells and
the network that use it are in :mod:`spikeflow.models.spike_dhs` (which re-exports it
and explains the search).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeflow import layers
from spikeflow.errors import ConfigurationError
from spikeflow.models.common import NeuronFactory

__all__ = ["MIN_ALPHA", "DGSUnit"]

#: The lowest surrogate temperature a search stage leaves (SpikingJelly's).
MIN_ALPHA = 0.2

#: A unit's state-dict entries of the search's state: each branch's surrogate alpha
#: (float64, main branch first) and whether a stage is running (search units only).
_ALPHAS, _SEARCHING = "surrogate_alpha", "dgs_searching"


class _Branch(nn.Module):
    """``neuron(Σ_i norms[i](convs[i](x_i)))`` on ``[T, B, C_i, H, W]`` inputs."""

    def __init__(
        self, in_channels: Sequence[int], out_channels: int, make_neuron: NeuronFactory
    ) -> None:
        super().__init__()
        self.convs = nn.ModuleList(layers.Conv2d(c, out_channels, 3, 1, 1) for c in in_channels)
        self.norms = nn.ModuleList(layers.BatchNorm2d(out_channels) for _ in in_channels)
        self.neuron = make_neuron()

    def forward(self, *inputs: Tensor) -> Tensor:
        total = self.norms[0](self.convs[0](inputs[0]))
        for conv, norm, x in zip(self.convs[1:], self.norms[1:], inputs[1:], strict=True):
            total = total + norm(conv(x))
        return self.neuron(total)


def _surrogate_of(branch: _Branch) -> Any:
    """The surrogate of ``branch``'s neuron, which must have a temperature ``alpha``."""
    surrogate = getattr(branch.neuron, "surrogate_function", None)
    if surrogate is None or not isinstance(getattr(surrogate, "alpha", None), (int, float)):
        raise ConfigurationError(
            "SpikeDHS surrogate search: the units' neurons need a surrogate_function with "
            f"a temperature alpha to search (DSpike), got {type(branch.neuron).__name__} "
            f"with surrogate {surrogate!r}"
        )
    return surrogate


class DGSUnit(nn.Module):
    """A SpikeDHS unit: ``LIF(Σ_i BN_i(conv3x3_i(x_i)))`` on ``[T, B, C_i, H, W]`` inputs
    (same ``H, W``), output ``[T, B, out_channels, H, W]`` spikes; with ``search`` also
    the two search copies of the surrogate gradient search (module docstring).

    ``branches[0]`` is the main branch, ``branches[1]`` and ``branches[2]`` the copies for
    the temperature lowered and raised by ``dgs_step``; ``dgs_alpha`` their mixing
    weights in the order (lowered, main, raised).

    Its state dict also keeps the search's state, which no tensor of the unit holds:
    ``surrogate_alpha`` (float64, each branch's surrogate ``alpha``, the main branch's
    first: the search's result) and, with ``search``, ``dgs_searching`` (a stage is
    running). A state dict without them (SpikingJelly's, converted: it keeps no alpha)
    leaves the unit's as they are; between a unit with the search copies and one
    without, the main branch's alpha loads.

    Args:
        in_channels: each input's channels.
        out_channels: the output's channels.
        make_neuron: a fresh multi-step neuron per call.
        search: hold the search copies and ``dgs_alpha``.
        dgs_step: the step of the search on the surrogate's ``alpha``.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: int,
        make_neuron: NeuronFactory,
        search: bool = True,
        dgs_step: float = 0.2,
    ) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            _Branch(in_channels, out_channels, make_neuron) for _ in range(3 if search else 1)
        )
        if search:
            self.dgs_alpha = nn.Parameter(torch.full((3,), 1e-3))
        self.search, self.dgs_step, self.searching = search, dgs_step, False

    def forward(self, *inputs: Tensor) -> Tensor:
        """``[T, B, C_i, H, W]`` each → ``[T, B, out_channels, H, W]``."""
        if not self.searching:
            return self.branches[0](*inputs)
        weights = F.softmax(self.dgs_alpha, dim=0)
        main, lower, upper = self.branches
        return (
            weights[0] * lower(*inputs) + weights[1] * main(*inputs) + weights[2] * upper(*inputs)
        )

    @property
    def alpha(self) -> float:
        """The main branch's surrogate temperature."""
        return float(_surrogate_of(self.branches[0]).alpha)

    def dgs_init_stage(self) -> None:
        """Start a search stage: the copies take the main branch's convolutions and
        batch norms (running statistics too), their surrogates the main ``alpha`` minus
        and plus ``dgs_step`` (0 is Dspike's box), ``dgs_alpha`` restarts at ``1e-3``
        each, and every parameter of the unit requires a gradient.

        Raises:
            ConfigurationError: a unit built without ``search``, neurons whose surrogate
                has no ``alpha``, or a ``dgs_step`` above the main ``alpha``: the lower
                copy's would be negative, and Dspike's curve depends on ``|alpha|`` only,
                so it would not be a lower temperature (any ``dgs_step <= 0.2``, the
                floor of ``alpha``, never gets there).
        """
        lowered = self._lower_alpha()
        main, lower, upper = self.branches
        alpha = self.alpha
        for copy in (lower, upper):
            copy.convs.load_state_dict(main.convs.state_dict())
            copy.norms.load_state_dict(main.norms.state_dict())
        _surrogate_of(lower).alpha = lowered
        _surrogate_of(upper).alpha = alpha + self.dgs_step
        with torch.no_grad():
            self.dgs_alpha.fill_(1e-3)
        for p in self.parameters():
            p.requires_grad_(True)
        self.searching = True

    def _lower_alpha(self) -> float:
        """The lower copy's ``alpha`` for :meth:`dgs_init_stage` (its checks)."""
        if not self.search:
            raise ConfigurationError(
                "SpikeDHS: this unit was built with surrogate_search=False (no search copies)"
            )
        alpha = self.alpha
        lowered = alpha - self.dgs_step
        if lowered < -1e-9 * self.dgs_step:  # (a rounding below 0 is 0)
            raise ConfigurationError(
                f"SpikeDHS: dgs_step={self.dgs_step:g} is above the main surrogate's "
                f"alpha={alpha:g}: the lower copy's alpha would be {lowered:g}, and a "
                "negative Dspike alpha is the curve of |alpha|, not a lower temperature "
                f"(SpikingJelly's fixed step 0.2 never gets there): use dgs_step <= "
                f"{MIN_ALPHA:g} (alpha's floor) or at most alpha"
            )
        return max(lowered, 0.0)

    def dgs_finish_stage(self, direction: int | None = None) -> None:
        """End a search stage: move the main surrogate's ``alpha`` by ``-dgs_step``,
        0 or ``+dgs_step`` (``direction`` 0, 1 or 2; None: the largest of ``dgs_alpha``,
        1 where the main branch's weight is among the largest, as when ``dgs_alpha``
        never moved), to at least 0.2, and use the main branch alone again.

        Raises:
            ConfigurationError: no stage was started, or ``direction`` not 0, 1 or 2.
        """
        direction = self._stage_direction(direction)
        surrogate = _surrogate_of(self.branches[0])
        alpha = surrogate.alpha + (-self.dgs_step, 0, self.dgs_step)[direction]
        surrogate.alpha = MIN_ALPHA if alpha < MIN_ALPHA else alpha
        self.searching = False

    def _stage_direction(self, direction: int | None) -> int:
        """The direction :meth:`dgs_finish_stage` takes for ``direction`` (checked)."""
        if not self.searching:
            raise ConfigurationError(
                "SpikeDHS: dgs_finish_stage without a search stage (call dgs_init_stage first)"
            )
        if direction is None:  # (a tie with the main branch keeps alpha: no evidence)
            weights = self.dgs_alpha.detach()
            direction = 1 if bool(weights[1] == weights.max()) else int(torch.argmax(weights))
        if isinstance(direction, bool) or direction not in (0, 1, 2):
            raise ConfigurationError(
                f"SpikeDHS: direction must be 0 (lower alpha), 1 (keep) or 2 (raise), "
                f"got {direction!r}"
            )
        _surrogate_of(self.branches[0])
        return int(direction)

    def _save_to_state_dict(self, destination: Any, prefix: str, keep_vars: bool) -> None:
        # The search's state, which is no tensor of the unit: each branch's surrogate
        # alpha (the search's result) and whether a stage is running.
        super()._save_to_state_dict(destination, prefix, keep_vars)
        alphas = [getattr(b.neuron, "surrogate_function", None) for b in self.branches]
        if all(isinstance(getattr(s, "alpha", None), (int, float)) for s in alphas):
            values = [float(s.alpha) for s in alphas]
            destination[prefix + _ALPHAS] = torch.tensor(values, dtype=torch.float64)
        if self.search:
            destination[prefix + _SEARCHING] = torch.tensor(self.searching)

    def _load_from_state_dict(
        self,
        state_dict: Any,
        prefix: str,
        local_metadata: Any,
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # A state dict without the search's state (SpikingJelly's, converted, or one
        # saved before it was kept) leaves the alphas and the stage as they are.
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict,
                                      missing_keys, unexpected_keys, error_msgs)  # fmt: skip
        for name in (_ALPHAS, _SEARCHING):
            if prefix + name in unexpected_keys:
                unexpected_keys.remove(prefix + name)
        alphas = state_dict.get(prefix + _ALPHAS)
        if alphas is not None and not alphas.is_meta:  # (meta: no values to load)
            if alphas.dim() != 1 or len(alphas) not in (1, 3):
                error_msgs.append(
                    f"{prefix}{_ALPHAS}: the branches' surrogate alphas (1 or 3, the main "
                    f"branch's first) expected, got shape {tuple(alphas.shape)}"
                )
            else:  # (between a search unit and one without: the main branch's alpha)
                values = alphas.tolist()[: len(self.branches)]
                for branch, value in zip(self.branches, values, strict=False):
                    _surrogate_of(branch).alpha = float(value)
        searching = state_dict.get(prefix + _SEARCHING)
        searching = None if searching is None or searching.is_meta else searching
        if searching is not None and bool(searching) and not self.search:
            error_msgs.append(
                f"{prefix}{_SEARCHING}: a unit in a search stage, but this unit was built "
                "with surrogate_search=False"
            )
        elif searching is not None and self.search:
            self.searching = bool(searching)

    def extra_repr(self) -> str:
        return f"search={self.search}, dgs_step={self.dgs_step:g}"
