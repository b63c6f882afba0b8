"""The converted network: the ANN's graph run on time folded into the batch.

Every non-spiking operation of a converted ANN (convolution, linear, average pooling,
flatten, residual additions, views) treats the samples of a batch independently, so the
converted network runs the ANN's own graph once on ``[T*B, ...]``: the input sequence
``[T, B, ...]`` is folded into the batch, and only the stateful parts (the neurons and
the gated max pools, wrapped in :class:`TimeFolded`) unfold it back to ``[T, B, ...]``
to run over time. Operations that mix samples along dim 0 (a ``cat`` or ``mean`` over
the batch) cannot be converted: :func:`~spikeflow.conversion.convert` refuses them.
"""

from __future__ import annotations

import numbers

import torch
from torch import Tensor, nn

from spikeflow.base import check_time_major
from spikeflow.conversion._checks import check_positive_int, single_input
from spikeflow.conversion.differential import differential_decode, differential_encode
from spikeflow.conversion.report import ConversionReport
from spikeflow.errors import ConfigurationError, ShapeError, StateError

__all__ = ["CODINGS", "ConvertedSNN", "TimeFolded", "constant_input"]

#: How a converted network codes values: rate (every step) or differential (changes).
CODINGS = ("rate", "differential")


class TimeFolded(nn.Module):
    """Run a multi-step module (``[T, B, ...]``) on a folded ``[T*B, ...]`` tensor.

    :class:`ConvertedSNN` sets :attr:`steps` for the duration of each call.
    ``write_back=True`` writes the output into the input and returns it: the spiking
    form of an in-place relu called by an untraced forward, which may read its input
    afterwards (as the ANN's relu, it changes its input). The input is given
    positionally or by the keyword ``input_name`` (the replaced ANN module's, as
    ``act(input=h)`` for a torch activation).
    """

    def __init__(
        self, module: nn.Module, write_back: bool = False, input_name: str = "input"
    ) -> None:
        super().__init__()
        self.module = module
        self.write_back = bool(write_back)
        self.input_name = input_name
        self.steps: int | None = None
        self.batch: int | None = None

    def check_folded(self, x: Tensor, owner: str, what: str) -> None:
        """Raise a :class:`~spikeflow.errors.ShapeError` unless ``x``'s dim 0 holds time
        outermost: a multiple of ``T`` (of ``T*B`` when the call's batch ``B`` is
        known, as inside :func:`run_time_folded`; any further factor is a dimension the
        network folded into the batch itself, time still outermost). A tensor whose
        dim 0 is not the batch (a sequence-first ``[L, B, ...]`` layout, as
        ``nn.MultiheadAttention(batch_first=False)``) would be split along the wrong
        axis and its steps mixed silently."""
        unit = self.steps if self.batch is None else self.steps * self.batch
        if x.dim() == 0 or x.shape[0] % unit:
            folded = f"T*B = {self.steps}*{self.batch}" if self.batch is not None else "T*B"
            raise ShapeError(
                f"{owner}: folded {what} of shape {tuple(x.shape)} is not [{folded}, ...] "
                f"for T={self.steps}: dim 0 must be the batch (time is folded into it); "
                "a layout with the batch elsewhere (sequence first, as "
                "batch_first=False) cannot be converted"
            )

    def forward(self, *inputs: object, **keywords: object) -> Tensor:
        """``module`` over time, input and output folded ``[T*B, ...]``.

        Raises:
            ConfigurationError: called with other than one tensor input (positional,
                or as ``input_name=``).
        """
        x = single_input(inputs, keywords, self.input_name)
        if not isinstance(x, Tensor):
            given = [f"{len(inputs)} positional"] + [f"{k}=" for k in keywords]
            raise ConfigurationError(
                f"{type(self.module).__name__} (a converted activation) is called with "
                f"{', '.join(given)} argument(s); it takes one tensor, positionally or "
                f"as {self.input_name}="
            )
        if self.steps is None:
            raise StateError(
                "a TimeFolded module runs inside a ConvertedSNN call, which tells it the "
                "number of time steps; call the converted network, not its parts"
            )
        self.check_folded(x, type(self.module).__name__, "input")
        out = self.module(x.unflatten(0, (self.steps, -1))).flatten(0, 1)
        return x.copy_(out) if self.write_back else out


def constant_input(x: Tensor, steps: int) -> Tensor:
    """The analog input ``[B, ...]`` repeated as a constant current ``[T, B, ...]``."""
    check_positive_int(steps, "steps (T)")
    return x.unsqueeze(0).expand(steps, *x.shape)


def run_time_folded(body: nn.Module, x_seq: Tensor, *more_seqs: Tensor) -> Tensor:
    """Run a converted ``body`` on ``x_seq`` ``[T, B, ...]`` (and ``more_seqs`` of the
    same ``T`` and ``B``: further inputs, a mask say) with time folded into the batch
    (its :class:`TimeFolded` neurons told ``T`` for the call), ``[T, B, ...]`` out.

    Raises:
        ShapeError: the body returned something other than a tensor.
    """
    steps, batch = x_seq.shape[0], x_seq.shape[1]
    folded = [m for m in body.modules() if isinstance(m, TimeFolded)]
    for module in folded:
        module.steps, module.batch = steps, batch
    try:
        out = body(*(seq.flatten(0, 1) for seq in (x_seq, *more_seqs)))
    finally:
        for module in folded:
            module.steps, module.batch = None, None
    if not isinstance(out, Tensor):
        raise ShapeError(f"the converted network returned {type(out).__name__}, not a tensor")
    return out.unflatten(0, (steps, batch))


class ConvertedSNN(nn.Module):
    """A spiking network made by :func:`spikeflow.conversion.convert`.

    ``forward`` takes a time-major input ``[T, B, ...]`` and returns the output of the
    last layer at every step, ``[T, B, ...]``; its mean over time is the SNN's answer.
    Each call starts from the neurons' initial state (use
    :func:`spikeflow.functional.streaming` to feed a rate-coded sequence in chunks; a
    differentially coded network runs whole sequences only, and streaming refuses it).

    Attributes:
        body: the converted graph (a ``torch.fx.GraphModule`` or the ANN's own modules).
        report: the :class:`ConversionReport`.
        input_dim: the number of dimensions of one ANN batch ``[B, ...]`` seen during
            calibration (``None`` when converted without data); the SNN then checks
            that its input has one more, the time dimension.
        coding: ``"rate"`` or ``"differential"``. A differential network encodes the
            input sequence (:func:`~spikeflow.conversion.differential.differential_encode`:
            a bias step, then differences), runs ``T + 1`` steps and decodes its output,
            so that it takes and returns the same ``[T, B, ...]`` as a rate-coded one.
            It does not stream: each call is a whole sequence.

    The network is inference only: its body stays in eval mode whatever :meth:`train`
    is told (a dropout or batch norm kept from the ANN must act as it did in the ANN's
    eval mode, never on the spikes' batch statistics).
    """

    def __init__(
        self,
        body: nn.Module,
        report: ConversionReport,
        input_dim: int | None = None,
        coding: str = "rate",
    ) -> None:
        super().__init__()
        self.body = body.eval()
        self.report = report
        self.input_dim = input_dim
        if coding not in CODINGS:
            raise ConfigurationError(f"coding must be one of {CODINGS}, got {coding!r}")
        self.coding = coding

    def forward(self, x_seq: Tensor) -> Tensor:
        """Last layer's output at each step ``[T, B, ...]`` for the input ``[T, B, ...]``."""
        check_time_major(x_seq, "ConvertedSNN")
        if self.input_dim is not None and x_seq.dim() != self.input_dim + 1:
            raise ShapeError(
                f"ConvertedSNN expects [T, B, ...] with {self.input_dim + 1} dimensions (the "
                f"ANN's calibration batches had {self.input_dim}, plus time); got shape "
                f"{tuple(x_seq.shape)}. For an image batch use constant_input(x, T) or "
                "snn.rate(x, T)."
            )
        if x_seq.shape[0] == 0:
            raise ShapeError(
                f"ConvertedSNN needs at least one time step (T >= 1); got shape "
                f"{tuple(x_seq.shape)} with T = 0"
            )
        if self.coding == "differential":
            x_seq = differential_encode(x_seq)
        out = run_time_folded(self.body, x_seq)
        return differential_decode(out) if self.coding == "differential" else out

    def train(self, mode: bool = True) -> ConvertedSNN:
        """Set :attr:`training` (as ``nn.Module.train``), the body kept in eval mode."""
        super().train(mode)
        self.body.eval()
        return self

    def rate(self, x: Tensor, steps: int, delay: int = 0) -> Tensor:
        """Mean output over ``steps`` steps for the constant analog input ``x`` ``[B, ...]``;
        with ``delay`` (in ``[0, steps)``) the mean of the steps after the first ``delay``
        only (the delayed read-out, :func:`~spikeflow.conversion.estimate_delay_start`)."""
        check_positive_int(steps, "steps (T)")
        _check_delay(delay, steps)
        return self(constant_input(x, steps))[delay:].mean(0)

    @torch.no_grad()
    def running_rate(self, x: Tensor, steps: int, delay: int = 0) -> Tensor:
        """Mean output after each of ``1..steps`` steps, ``[steps, B, ...]``, in one run.

        Entry ``t-1`` equals ``rate(x, t)``: each call starts from the initial state and
        the network is causal, so one run of ``steps`` steps answers every shorter T.
        With ``delay`` the first ``delay`` steps are not read: ``[steps − delay, B, ...]``,
        entry ``i`` the mean of steps ``delay + 1 .. delay + i + 1``, which is
        ``rate(x, delay + i + 1, delay=delay)``.
        """
        check_positive_int(steps, "steps (T)")
        _check_delay(delay, steps)
        out = self(constant_input(x, steps))[delay:]
        counts = torch.arange(1, steps - delay + 1, dtype=out.dtype, device=out.device)
        return out.cumsum(0) / counts.reshape((-1,) + (1,) * (out.dim() - 1))


def _check_delay(delay: object, steps: int) -> None:
    """``delay`` is an integer in ``[0, steps)``: at least one step is read out."""
    if isinstance(delay, bool) or not isinstance(delay, numbers.Integral) or not 0 <= delay < steps:
        raise ConfigurationError(
            f"delay must be an integer in [0, steps) = [0, {steps}) (the warm-up steps "
            f"skipped before reading out; at least one step is read), got {delay!r}"
        )
