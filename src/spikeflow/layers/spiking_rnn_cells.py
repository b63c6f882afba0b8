"""Spiking recurrent cells, one time step: :class:`SpikingLSTMCell`,
:class:`SpikingGRUCell` and :class:`SpikingVanillaRNNCell` (``x`` is ``[B, input_size]``),
and the checks they share with the stacked layers of :mod:`spikeflow.layers.spiking_rnn`
(which re-exports the cells and documents the model, its arguments and its state layout).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor, nn

from spikeflow._checks import check_flag
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.layers._checks import check_int, check_surrogate
from spikeflow.surrogate import Erf, Surrogate

__all__ = ["SpikingGRUCell", "SpikingLSTMCell", "SpikingVanillaRNNCell"]

_States = tuple[Tensor, ...]


def _gate_surrogates(
    owner: str, first: Surrogate | None, second: Surrogate | None
) -> tuple[Surrogate, Surrogate | None]:
    """The LSTM and GRU cells' ``(surrogate_function1, surrogate_function2)``, checked.

    ``first`` defaults to ``Erf()``; ``second`` may be None (the cell then uses
    ``first`` for every gate). Both must spike, or both be smooth (SpikingJelly
    requires the same).
    """
    first = Erf() if first is None else first
    check_surrogate(owner, "surrogate_function1", first)
    check_surrogate(owner, "surrogate_function2", second, optional=True)
    if second is not None and first.spiking != second.spiking:
        raise ConfigurationError(
            f"{owner}: surrogate_function1 and surrogate_function2 must both spike or both "
            f"be smooth, got spiking={first.spiking} and spiking={second.spiking}"
        )
    return first, second


def _check_floating(owner: str, x: object, what: str) -> Tensor:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        found = x.dtype if isinstance(x, Tensor) else type(x).__name__
        raise DTypeError(f"{owner}: {what} must be a floating-point tensor, got {found}")
    return x


def _check_state_tensor(
    owner: str, name: str, state: object, expected: tuple[int, ...], layout: str, x: Tensor
) -> Tensor:
    """``state`` if it is a tensor of ``x``'s dtype and shape ``expected``."""
    state = _check_floating(owner, state, f"state {name}")
    if tuple(state.shape) != expected:
        raise ShapeError(
            f"{owner}: state {name} must have shape {layout} = {list(expected)}, "
            f"got {tuple(state.shape)}"
        )
    if state.dtype != x.dtype:
        raise DTypeError(
            f"{owner}: state {name} has dtype {state.dtype}, the input has {x.dtype}; "
            "they must be the same"
        )
    return state


# -- cells -------------------------------------------------------------------------------


class _SpikingRNNCellBase(nn.Module):
    """What the cells share: the two linear maps, their initialisation, the checks.

    A subclass sets ``gates`` (how many blocks of ``hidden_size`` rows the linear maps
    have), ``state_names`` and implements :meth:`_step`, which takes the input
    projection ``linear_ih(x)`` already computed: the stacked layers compute it for all
    time steps in one matrix product and call :meth:`_step` per step.
    """

    gates: ClassVar[int]
    state_names: ClassVar[tuple[str, ...]] = ("h",)

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__()
        name = type(self).__name__
        self.input_size = check_int(f"{name}: input_size", input_size, 1)
        self.hidden_size = check_int(f"{name}: hidden_size", hidden_size, 1)
        self.bias = check_flag(name, "bias", bias)
        self.linear_ih = nn.Linear(self.input_size, self.gates * self.hidden_size, bias=bias)
        self.linear_hh = nn.Linear(self.hidden_size, self.gates * self.hidden_size, bias=bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw every weight and bias from ``U(-sqrt(k), sqrt(k))``, ``k = 1/hidden_size``.

        The draws run in SpikingJelly's order (``linear_ih`` weight and bias, then
        ``linear_hh``'s) after ``nn.Linear``'s own initialisation, so the same seed gives
        the same initial parameters as SpikingJelly's cell.
        """
        bound = math.sqrt(1.0 / self.hidden_size)
        for param in self.parameters():
            nn.init.uniform_(param, -bound, bound)

    def weight_ih(self) -> Tensor:
        """The input-to-hidden weight ``[gates * hidden_size, input_size]``."""
        return self.linear_ih.weight

    def weight_hh(self) -> Tensor:
        """The hidden-to-hidden weight ``[gates * hidden_size, hidden_size]``."""
        return self.linear_hh.weight

    def bias_ih(self) -> Tensor | None:
        """The input-to-hidden bias ``[gates * hidden_size]`` (``None`` without bias)."""
        return self.linear_ih.bias

    def bias_hh(self) -> Tensor | None:
        """The hidden-to-hidden bias ``[gates * hidden_size]`` (``None`` without bias)."""
        return self.linear_hh.bias

    def _step(self, x_proj: Tensor, states: _States) -> _States:
        """One step from ``x_proj = linear_ih(x_t)`` ``[B, gates * hidden_size]``."""
        raise NotImplementedError

    def _check_input(self, x: object) -> Tensor:
        name = type(self).__name__
        x = _check_floating(name, x, "the input")
        if x.dim() != 2 or x.shape[1] != self.input_size:
            raise ShapeError(
                f"{name} runs one time step: it expects input [B, input_size] = "
                f"[B, {self.input_size}], got shape {tuple(x.shape)}"
                + (" (run a sequence through the stacked layer instead)" if x.dim() == 3 else "")
            )
        return x

    def _initial_states(self, x: Tensor, given: tuple[object, ...] | None) -> _States:
        """Zeros ``[B, hidden_size]`` like ``x`` for each state, or the checked ``given``."""
        batch = x.shape[0]
        if given is None:
            h = x.new_zeros(batch, self.hidden_size)
            return tuple(h if i == 0 else torch.zeros_like(h) for i in range(len(self.state_names)))
        expected = (batch, self.hidden_size)
        return tuple(
            _check_state_tensor(type(self).__name__, n, s, expected, "[B, hidden_size]", x)
            for n, s in zip(self.state_names, given)
        )

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}, hidden_size={self.hidden_size}, bias={self.bias}"


class _TwoSurrogateCell(_SpikingRNNCellBase):
    """A cell with two spike functions (LSTM, GRU): ``surrogate_function1`` for the
    gates, ``surrogate_function2`` (``None``: the first) for the candidate."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        surrogate_function1: Surrogate | None = None,
        surrogate_function2: Surrogate | None = None,
    ) -> None:
        super().__init__(input_size, hidden_size, bias)
        self.surrogate_function1, self.surrogate_function2 = _gate_surrogates(
            type(self).__name__, surrogate_function1, surrogate_function2
        )


class SpikingLSTMCell(_TwoSurrogateCell):
    r"""One step of a spiking LSTM (SpikingJelly's ``rnn.SpikingLSTMCell``).

    With ``Θ`` the spike function (Heaviside forward, surrogate derivative backward)::

        i = Θ1(W_ii x + b_ii + W_hi h + b_hi)      input gate
        f = Θ1(W_if x + b_if + W_hf h + b_hf)      forget gate
        g = Θ2(W_ig x + b_ig + W_hg h + b_hg)      cell input
        o = Θ1(W_io x + b_io + W_ho h + b_ho)      output gate
        c' = min(f * c + i * g, 1)                 the min has no gradient (see below)
        h' = o * c'

    ``linear_ih`` and ``linear_hh`` stack the four blocks in the order ``i, f, g, o``
    (as ``torch.nn.LSTMCell``). All gates are spikes, so from zero states ``c`` and
    ``h`` stay in ``{0, 1}``: the clamp keeps ``c`` from counting up past 1 when both
    ``f * c`` and ``i * g`` fire; its gradient is passed straight through.

    The cell keeps no state: pass ``(h, c)`` back in at the next step. All weights and
    biases start from ``U(-sqrt(k), sqrt(k))``, ``k = 1/hidden_size``.

    Args:
        input_size: features of the input ``x``.
        hidden_size: features of the states ``h`` and ``c``.
        bias: whether ``linear_ih`` and ``linear_hh`` have biases.
        surrogate_function1: the spike function of ``i``, ``f`` and ``o`` (default
            :class:`~spikeflow.surrogate.Erf`, as SpikingJelly).
        surrogate_function2: the spike function of ``g``; ``None`` (default): the
            first one. Both must have the same ``spiking`` flag.

    Raises:
        ConfigurationError: a size is not an integer >= 1, ``bias`` is not a bool, a
            surrogate is not a spikeflow ``Surrogate``, or the two differ in ``spiking``.

    Example::

        >>> cell = SpikingLSTMCell(3, 4)
        >>> h, c = cell(torch.randn(2, 3))             # from zero states
        >>> h, c = cell(torch.randn(2, 3), (h, c))     # [2, 4] each
    """

    gates = 4
    state_names = ("h", "c")

    def _step(self, x_proj: Tensor, states: _States) -> _States:
        h, c = states
        n = self.hidden_size
        pre = x_proj + self.linear_hh(h)
        if self.surrogate_function2 is None:
            i, f, g, o = self.surrogate_function1(pre).split(n, dim=1)
        else:
            i, f = self.surrogate_function1(pre[:, : 2 * n]).split(n, dim=1)
            g = self.surrogate_function2(pre[:, 2 * n : 3 * n])
            o = self.surrogate_function1(pre[:, 3 * n :])
        c = c * f + i * g
        # Straight-through clamp (SpikingJelly's): with spike gates, i * g and f * c are
        # 0 or 1 each, so c would count up to 2, 3, ... and h = o * c would stop being a
        # spike; capping c at 1 keeps the cell state a single bit. The cap is applied in
        # place without recording it, so the backward pass treats it as the identity: a
        # recorded min would have zero derivative wherever c > 1 and cut the gradient
        # through the cell state and into the f, i and g gates exactly at those
        # elements. In place is safe: the add that made this c saves no tensor for its
        # backward, and the products below save c after the cap.
        with torch.no_grad():
            c.clamp_(max=1.0)
        return c * o, c

    def forward(self, x: Tensor, hc: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """One step.

        Args:
            x: the input ``[B, input_size]``.
            hc: ``(h, c)``, each ``[B, hidden_size]``; ``None``: zeros.

        Returns:
            ``(h', c')``, each ``[B, hidden_size]``.

        Raises:
            ShapeError: ``x`` or a state has the wrong shape.
            DTypeError: ``x`` or a state is not floating point, or their dtypes differ.
            ConfigurationError: ``hc`` is not a pair of tensors.
        """
        x = self._check_input(x)
        if hc is not None and (not isinstance(hc, (tuple, list)) or len(hc) != 2):
            raise ConfigurationError(
                f"{type(self).__name__}: hc must be a pair (h, c) of tensors or None, "
                f"got {type(hc).__name__}"
                + (f" of length {len(hc)}" if isinstance(hc, (tuple, list)) else "")
            )
        h, c = self._step(self.linear_ih(x), self._initial_states(x, hc))
        return h, c


class _SingleStateCell(_SpikingRNNCellBase):
    """A cell whose only state is ``h`` (GRU, vanilla RNN): SpikingJelly's call."""

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        """One step.

        Args:
            x: the input ``[B, input_size]``.
            h: the state ``[B, hidden_size]``; ``None``: zeros.

        Returns:
            ``h'`` ``[B, hidden_size]``.

        Raises:
            ShapeError: ``x`` or ``h`` has the wrong shape.
            DTypeError: ``x`` or ``h`` is not floating point, or their dtypes differ.
        """
        x = self._check_input(x)
        states = self._initial_states(x, None if h is None else (h,))
        return self._step(self.linear_ih(x), states)[0]


class SpikingGRUCell(_SingleStateCell, _TwoSurrogateCell):
    r"""One step of a spiking GRU (SpikingJelly's ``rnn.SpikingGRUCell``).

    With ``Θ`` the spike function (Heaviside forward, surrogate derivative backward)::

        r = Θ1(W_ir x + b_ir + W_hr h + b_hr)            reset gate
        z = Θ1(W_iz x + b_iz + W_hz h + b_hz)            update gate
        n = Θ2(W_in x + b_in + r * (W_hn h + b_hn))      candidate
        h' = (1 - z) * n + z * h

    ``linear_ih`` and ``linear_hh`` stack the blocks in the order ``r, z, n`` (as
    ``torch.nn.GRUCell``). From a zero (or spike) state ``h`` stays a spike tensor.
    The cell keeps no state: pass ``h`` back in at the next step. All weights and
    biases start from ``U(-sqrt(k), sqrt(k))``, ``k = 1/hidden_size``.

    Args:
        input_size: features of the input ``x``.
        hidden_size: features of the state ``h``.
        bias: whether ``linear_ih`` and ``linear_hh`` have biases.
        surrogate_function1: the spike function of ``r`` and ``z`` (default
            :class:`~spikeflow.surrogate.Erf`, as SpikingJelly).
        surrogate_function2: the spike function of ``n``; ``None`` (default): the first
            one. Both must have the same ``spiking`` flag.

    Raises:
        ConfigurationError: a size is not an integer >= 1, ``bias`` is not a bool, a
            surrogate is not a spikeflow ``Surrogate``, or the two differ in ``spiking``.
    """

    gates = 3

    def _step(self, x_proj: Tensor, states: _States) -> _States:
        (h,) = states
        n = self.hidden_size
        h_proj = self.linear_hh(h)
        r, z = self.surrogate_function1(x_proj[:, : 2 * n] + h_proj[:, : 2 * n]).split(n, dim=1)
        spike = self.surrogate_function1
        if self.surrogate_function2 is not None:
            spike = self.surrogate_function2
        new = spike(x_proj[:, 2 * n :] + r * h_proj[:, 2 * n :])
        return ((1.0 - z) * new + z * h,)


class SpikingVanillaRNNCell(_SingleStateCell):
    r"""One step of a spiking Elman RNN (SpikingJelly's ``rnn.SpikingVanillaRNNCell``)::

        h' = Θ(W_ih x + b_ih + W_hh h + b_hh)

    with ``Θ`` the spike function (Heaviside forward, surrogate derivative backward).
    The cell keeps no state: pass ``h`` back in at the next step. All weights and
    biases start from ``U(-sqrt(k), sqrt(k))``, ``k = 1/hidden_size``.

    Args:
        input_size: features of the input ``x``.
        hidden_size: features of the state ``h``.
        bias: whether ``linear_ih`` and ``linear_hh`` have biases.
        surrogate_function: the spike function (default
            :class:`~spikeflow.surrogate.Erf`, as SpikingJelly).

    Raises:
        ConfigurationError: a size is not an integer >= 1, ``bias`` is not a bool, or
            the surrogate is not a spikeflow ``Surrogate``.
    """

    gates = 1

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        surrogate_function: Surrogate | None = None,
    ) -> None:
        super().__init__(input_size, hidden_size, bias)
        surrogate_function = Erf() if surrogate_function is None else surrogate_function
        check_surrogate(type(self).__name__, "surrogate_function", surrogate_function)
        self.surrogate_function = surrogate_function

    def _step(self, x_proj: Tensor, states: _States) -> _States:
        (h,) = states
        return (self.surrogate_function(x_proj + self.linear_hh(h)),)
