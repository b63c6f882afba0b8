"""Spiking recurrent layers: LSTM, GRU and vanilla RNN whose gates are spikes.

Each gate is a Heaviside step of its pre-activation in the forward pass (a surrogate
derivative in the backward pass), so the hidden state of a layer is a spike tensor
(Lotfi Rezaabad and Vishwanath, "Long Short-Term Memory Spiking Networks and Their
Applications", ICONS 2020). The classes take SpikingJelly's
``spikingjelly.activation_based.rnn`` arguments (same names, order and defaults), call
conventions, state layout and parameter names, so a SpikingJelly ``state_dict`` loads
unchanged and gives the same outputs, states and gradients:

* cells, one step: :class:`SpikingLSTMCell`, :class:`SpikingGRUCell`,
  :class:`SpikingVanillaRNNCell` (``x`` is ``[B, input_size]``);
* stacked layers, a whole sequence: :class:`SpikingLSTM`, :class:`SpikingGRU`,
  :class:`SpikingVanillaRNN` (``x`` is time-major ``[T, B, input_size]``), optionally
  bidirectional, with dropout between layers.

Like ``torch.nn.LSTM`` these layers take their initial state as an argument (zeros when
none is given) and return the final one; they carry no hidden state between calls, so
they are not :class:`~spikeflow.base.MemoryModule` s (``reset_net`` does not touch
them, and :func:`~spikeflow.functional.streaming` refuses the stacked layers, which run
whole sequences only: feed a long sequence in chunks by passing the returned states
back in).

The stacked layers keep the states of all layers and directions in one tensor per
state, ``[num_layers * num_directions, B, hidden_size]``: all forward layers first,
then all reverse layers (``[layer 0, ..., layer L-1, layer 0 reverse, ...]``, not
``torch.nn.LSTM``'s interleaved order). ``linear_ih(x)`` runs for all ``T`` steps in
one matrix product, only ``linear_hh(h)`` per step. The parameter names are
SpikingJelly's (``cells.0.linear_ih.weight``, ..., ``cells_reverse.0.linear_hh.bias``).

See ``docs/layers.md``.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeflow._checks import check_flag
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.layers._checks import check_int, check_real, check_surrogate
from spikeflow.surrogate import Erf, Surrogate

__all__ = [
    "SpikingGRU",
    "SpikingGRUCell",
    "SpikingLSTM",
    "SpikingLSTMCell",
    "SpikingVanillaRNN",
    "SpikingVanillaRNNCell",
]

#: The states of one layer and direction: ``(h,)``, or ``(h, c)`` for the LSTM.
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


# -- stacked layers ----------------------------------------------------------------------


class _SpikingRNNBase(nn.Module):
    """Stacked, optionally bidirectional spiking RNN over a time-major sequence.

    The layers are ``cells[0 .. num_layers-1]`` (and ``cells_reverse`` for the reverse
    direction); layer ``l > 0`` reads the output of layer ``l - 1`` (both directions
    concatenated). A subclass sets ``cell_type``.
    """

    cell_type: ClassVar[type[_SpikingRNNCellBase]]
    #: Runs whole sequences only: ``spikeflow.functional.streaming`` refuses it (the
    #: states are explicit: pass the returned states back in to continue a sequence).
    streamable = False

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        bias: bool = True,
        dropout_p: float = 0.0,
        invariant_dropout_mask: bool = False,
        bidirectional: bool = False,
        surrogate_function1: Surrogate | None = None,
        surrogate_function2: Surrogate | None = None,
    ) -> None:
        """:class:`SpikingLSTM`'s and :class:`SpikingGRU`'s arguments (their docstrings);
        :class:`SpikingVanillaRNN` passes its one ``surrogate_function`` as
        ``surrogate_function1``. The surrogates go to every cell, ``surrogate_function2``
        only where given (the vanilla cell takes one)."""
        super().__init__()
        name = type(self).__name__
        self.input_size = check_int(f"{name}: input_size", input_size, 1)
        self.hidden_size = check_int(f"{name}: hidden_size", hidden_size, 1)
        self.num_layers = check_int(f"{name}: num_layers", num_layers, 1)
        self.bias = check_flag(name, "bias", bias)
        self.dropout_p = check_real(f"{name}: dropout_p", dropout_p, 0.0, 1.0, high_open=True)
        self.invariant_dropout_mask = check_flag(
            name, "invariant_dropout_mask", invariant_dropout_mask
        )
        self.bidirectional = check_flag(name, "bidirectional", bidirectional)
        directions = 2 if self.bidirectional else 1
        sizes = [self.input_size] + [directions * self.hidden_size] * (self.num_layers - 1)
        # one surrogate instance for all cells (they hold no state), as SpikingJelly
        first = Erf() if surrogate_function1 is None else surrogate_function1
        surrogates = (first,) if surrogate_function2 is None else (first, surrogate_function2)
        # forward cells, then reverse cells: SpikingJelly's order of parameter draws
        self.cells = nn.ModuleList(
            self.cell_type(size, self.hidden_size, self.bias, *surrogates) for size in sizes
        )
        if self.bidirectional:
            self.cells_reverse = nn.ModuleList(
                self.cell_type(size, self.hidden_size, self.bias, *surrogates) for size in sizes
            )

    @classmethod
    def base_cell(cls) -> type[_SpikingRNNCellBase]:
        """The cell class of each layer and direction."""
        return cls.cell_type

    @classmethod
    def states_num(cls) -> int:
        """How many state tensors each layer has: 2 (``h``, ``c``) for the LSTM, else 1."""
        return len(cls.cell_type.state_names)

    def _check_input(self, x: object) -> Tensor:
        name = type(self).__name__
        x = _check_floating(name, x, "the input")
        if x.dim() != 3 or x.shape[2] != self.input_size:
            hint = (
                " (missing the time dimension? add it with x.unsqueeze(0), or use the cell)"
                if x.dim() == 2
                else ""
            )
            raise ShapeError(
                f"{name} expects a time-major input [T, B, input_size] = "
                f"[T, B, {self.input_size}], got shape {tuple(x.shape)}{hint}"
            )
        if x.shape[0] == 0:
            raise ShapeError(f"{name}: the input sequence is empty (T = 0)")
        return x

    def _initial_states(self, x: Tensor, states: object) -> tuple[Tensor, ...]:
        """One ``[num_layers * directions, B, hidden_size]`` tensor per state name."""
        name = type(self).__name__
        names = self.cell_type.state_names
        rows = self.num_layers * (2 if self.bidirectional else 1)
        expected = (rows, x.shape[1], self.hidden_size)
        if states is None:
            zeros = x.new_zeros(expected)
            return tuple(zeros if i == 0 else torch.zeros_like(zeros) for i in range(len(names)))
        if isinstance(states, Tensor) and len(names) == 1:
            states = (states,)
        if not isinstance(states, (tuple, list)) or len(states) != len(names):
            want = "a tensor h" if len(names) == 1 else f"a tuple ({', '.join(names)})"
            found = type(states).__name__
            if isinstance(states, (tuple, list)):
                found += f" of length {len(states)}"
            raise ConfigurationError(f"{name}: states must be None or {want}, got {found}")
        layout = "[num_layers * num_directions, B, hidden_size]"
        return tuple(
            _check_state_tensor(name, n, s, expected, layout, x) for n, s in zip(names, states)
        )

    @staticmethod
    def _run_direction(
        cell: _SpikingRNNCellBase, x: Tensor, states: _States, reverse: bool
    ) -> tuple[Tensor, _States]:
        """One layer in one direction over ``x`` ``[T, B, in]``: the output ``h`` of
        every step ``[T, B, hidden_size]`` (in input order) and the final states."""
        x_proj = cell.linear_ih(x)  # all T steps in one matrix product
        outputs = []
        for x_t in reversed(x_proj.unbind(0)) if reverse else x_proj.unbind(0):
            states = cell._step(x_t, states)
            outputs.append(states[0])
        if reverse:
            outputs.reverse()
        return torch.stack(outputs), states

    def _forward(self, x: Tensor, states: object) -> tuple[Tensor, tuple[Tensor, ...]]:
        x = self._check_input(x)
        initial = self._initial_states(x, states)
        layers = self.num_layers
        dropout = self.training and self.dropout_p > 0.0 and layers > 1
        masks = None
        if dropout and self.invariant_dropout_mask:
            # One mask per layer boundary and sample, shared by all T steps (0 or
            # 1/(1 - p), like spikeflow.layers.Dropout), drawn for all boundaries at once
            # before the layers run: SpikingJelly's draw, so a seed gives its masks.
            width = (2 if self.bidirectional else 1) * self.hidden_size
            masks = F.dropout(
                x.new_ones(layers - 1, x.shape[1], width), p=self.dropout_p, training=True
            )
        finals: list[_States] = [()] * initial[0].shape[0]  # per layer and direction
        y = x
        for layer in range(layers):
            y_fwd, finals[layer] = self._run_direction(
                self.cells[layer], y, tuple(s[layer] for s in initial), reverse=False
            )
            if self.bidirectional:
                back = layer + layers
                y_back, finals[back] = self._run_direction(
                    self.cells_reverse[layer], y, tuple(s[back] for s in initial), reverse=True
                )
                y = torch.cat((y_fwd, y_back), dim=-1)
            else:
                y = y_fwd
            if dropout and layer < layers - 1:
                y = y * masks[layer] if masks is not None else F.dropout(y, self.dropout_p, True)
        final = tuple(torch.stack([f[k] for f in finals]) for k in range(len(initial)))
        return y, final

    def extra_repr(self) -> str:
        return (
            f"input_size={self.input_size}, hidden_size={self.hidden_size}, "
            f"num_layers={self.num_layers}, bias={self.bias}, dropout_p={self.dropout_p}, "
            f"invariant_dropout_mask={self.invariant_dropout_mask}, "
            f"bidirectional={self.bidirectional}"
        )


class SpikingLSTM(_SpikingRNNBase):
    r"""Stacked spiking LSTM over a time-major sequence (SpikingJelly's ``rnn.SpikingLSTM``).

    Every layer and direction is a :class:`SpikingLSTMCell`: spike gates ``i, f, g,
    o``, cell state capped at 1 with a straight-through gradient, ``h = o * c``.

    Args:
        input_size: features of the input ``x``.
        hidden_size: features of each state, and of each direction's output.
        num_layers: stacked layers; layer ``l > 0`` reads the output of layer ``l - 1``.
        bias: whether the linear maps have biases.
        dropout_p: dropout probability on the output of every layer but the last, in
            training only (``[0, 1)``, default 0); kept values are scaled by ``1/(1 - p)``.
        invariant_dropout_mask: if True, each sample keeps one dropout mask for all
            time steps (one per layer boundary, as :class:`~spikeflow.layers.Dropout`);
            if False (default), each element of ``[T, B, ...]`` is dropped on its own.
        bidirectional: if True, each layer also runs a second cell (``cells_reverse``)
            over the reversed sequence, and its output concatenates the forward and the
            reverse output of each step: ``[T, B, 2 * hidden_size]``.
        surrogate_function1: the spike function of ``i``, ``f``, ``o`` (default
            :class:`~spikeflow.surrogate.Erf`, as SpikingJelly).
        surrogate_function2: the spike function of ``g`` (``None``, default: the first).

    State layout, chunked sequences and parameter names: the module docstring.

    Raises:
        ConfigurationError: a size or ``num_layers`` is not an integer >= 1,
            ``dropout_p`` is not in ``[0, 1)``, a flag is not a bool, or a surrogate is
            not a spikeflow ``Surrogate`` (or the two differ in ``spiking``).

    Example::

        >>> lstm = SpikingLSTM(8, 16, num_layers=2, bidirectional=True)
        >>> y, (h, c) = lstm(torch.rand(10, 4, 8))  # y [10, 4, 32]; h, c [4, 4, 16]
        >>> y2, (h, c) = lstm(torch.rand(5, 4, 8), (h, c))  # the next 5 steps
    """

    cell_type = SpikingLSTMCell

    def forward(
        self, x: Tensor, states: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Run the sequence.

        Args:
            x: time-major input ``[T, B, input_size]``.
            states: ``(h, c)``, each ``[num_layers * num_directions, B, hidden_size]``;
                ``None``: zeros.

        Returns:
            ``(y, (h_n, c_n))``: the last layer's ``h`` at every step,
            ``[T, B, num_directions * hidden_size]``, and the final states.

        Raises:
            ShapeError: ``x`` is not ``[T, B, input_size]``, or a state has the wrong shape.
            DTypeError: ``x`` or a state is not floating point, or their dtypes differ.
            ConfigurationError: ``states`` is not a pair of tensors.
        """
        y, (h, c) = self._forward(x, states)
        return y, (h, c)


class _SingleStateRNN(_SpikingRNNBase):
    """Stacked layers whose only state is ``h`` (GRU, vanilla RNN): SpikingJelly's call."""

    def forward(self, x: Tensor, states: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Run the sequence.

        Args:
            x: time-major input ``[T, B, input_size]``.
            states: ``h`` ``[num_layers * num_directions, B, hidden_size]``; ``None``:
                zeros.

        Returns:
            ``(y, h_n)``: the last layer's ``h`` at every step,
            ``[T, B, num_directions * hidden_size]``, and the final state.

        Raises:
            ShapeError: ``x`` is not ``[T, B, input_size]``, or ``states`` has the wrong
                shape.
            DTypeError: ``x`` or ``states`` is not floating point, or their dtypes differ.
        """
        y, (h,) = self._forward(x, states)
        return y, h


class SpikingGRU(_SingleStateRNN):
    r"""Stacked spiking GRU over a time-major sequence (SpikingJelly's ``rnn.SpikingGRU``).

    Every layer and direction is a :class:`SpikingGRUCell`: spike gates ``r, z`` and
    spike candidate ``n``, ``h' = (1 - z) * n + z * h``.

    Args:
        input_size: features of the input ``x``.
        hidden_size: features of each state, and of each direction's output.
        num_layers: stacked layers; layer ``l > 0`` reads the output of layer ``l - 1``.
        bias: whether the linear maps have biases.
        dropout_p: dropout probability on the output of every layer but the last, in
            training only (``[0, 1)``, default 0); kept values are scaled by ``1/(1 - p)``.
        invariant_dropout_mask: if True, each sample keeps one dropout mask for all
            time steps (one per layer boundary, as :class:`~spikeflow.layers.Dropout`);
            if False (default), each element of ``[T, B, ...]`` is dropped on its own.
        bidirectional: if True, each layer also runs a second cell (``cells_reverse``)
            over the reversed sequence, and its output concatenates the forward and the
            reverse output of each step: ``[T, B, 2 * hidden_size]``.
        surrogate_function1: the spike function of ``r``, ``z`` (default
            :class:`~spikeflow.surrogate.Erf`, as SpikingJelly).
        surrogate_function2: the spike function of ``n`` (``None``, default: the first).

    State layout, chunked sequences and parameter names: the module docstring.

    Raises:
        ConfigurationError: a size or ``num_layers`` is not an integer >= 1,
            ``dropout_p`` is not in ``[0, 1)``, a flag is not a bool, or a surrogate is
            not a spikeflow ``Surrogate`` (or the two differ in ``spiking``).
    """

    cell_type = SpikingGRUCell


class SpikingVanillaRNN(_SingleStateRNN):
    r"""Stacked spiking Elman RNN over a time-major sequence (SpikingJelly's
    ``rnn.SpikingVanillaRNN``).

    Every layer and direction is a :class:`SpikingVanillaRNNCell`:
    ``h' = Θ(W_ih x + b_ih + W_hh h + b_hh)``.

    Args:
        input_size: features of the input ``x``.
        hidden_size: features of each state, and of each direction's output.
        num_layers: stacked layers; layer ``l > 0`` reads the output of layer ``l - 1``.
        bias: whether the linear maps have biases.
        dropout_p: dropout probability on the output of every layer but the last, in
            training only (``[0, 1)``, default 0); kept values are scaled by ``1/(1 - p)``.
        invariant_dropout_mask: if True, each sample keeps one dropout mask for all
            time steps (one per layer boundary, as :class:`~spikeflow.layers.Dropout`);
            if False (default), each element of ``[T, B, ...]`` is dropped on its own.
        bidirectional: if True, each layer also runs a second cell (``cells_reverse``)
            over the reversed sequence, and its output concatenates the forward and the
            reverse output of each step: ``[T, B, 2 * hidden_size]``.
        surrogate_function: the spike function (default
            :class:`~spikeflow.surrogate.Erf`, as SpikingJelly).

    State layout, chunked sequences and parameter names: the module docstring.

    Raises:
        ConfigurationError: a size or ``num_layers`` is not an integer >= 1,
            ``dropout_p`` is not in ``[0, 1)``, a flag is not a bool, or a surrogate is
            not a spikeflow ``Surrogate`` (or the two differ in ``spiking``).
    """

    cell_type = SpikingVanillaRNNCell

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        bias: bool = True,
        dropout_p: float = 0.0,
        invariant_dropout_mask: bool = False,
        bidirectional: bool = False,
        surrogate_function: Surrogate | None = None,
    ) -> None:
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bias,
            dropout_p,
            invariant_dropout_mask,
            bidirectional,
            surrogate_function,
        )
