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

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeflow._checks import check_flag
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.layers._checks import check_int, check_real
from spikeflow.layers.spiking_rnn_cells import (
    SpikingGRUCell,
    SpikingLSTMCell,
    SpikingVanillaRNNCell,
    _check_floating,
    _check_state_tensor,
    _SpikingRNNCellBase,
    _States,
)
from spikeflow.surrogate import Erf, Surrogate

__all__ = [
    "SpikingGRU",
    "SpikingGRUCell",
    "SpikingLSTM",
    "SpikingLSTMCell",
    "SpikingVanillaRNN",
    "SpikingVanillaRNNCell",
]

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
