"""The calibration pass of :func:`~spikeflow.conversion.convert`: the calibration
batches run through the ANN with placeholders (sites) at its activations, which record
the activations that scale the thresholds, while a ``TorchFunctionMode`` watches the
forwards torch.fx could not trace for relu, nonlinear and batch-dim calls; then the
batch-dim probes run once more on a batch of another size.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from spikeflow.conversion.batchdim import WHY, BatchDimProbe, may_act_on_batch_dim
from spikeflow.conversion.calibrate import batch_input
from spikeflow.conversion.classify import MAXPOOL_CALLS, is_nonlinear_name
from spikeflow.conversion.report import ConversionReport
from spikeflow.conversion.site import Site
from spikeflow.errors import ConfigurationError, ShapeError

__all__ = ["CalibrationPass"]

_RELU_FUNCS = frozenset({F.relu, F.relu_, torch.relu, torch.relu_, Tensor.relu, Tensor.relu_})


class _CallWatcher(TorchFunctionMode):
    """Catches relu and other nonlinear calls made directly in untraced forwards, and
    the calls there that may act on dim 0 (``unchecked``: the forward's name -> them)."""

    def __init__(
        self,
        stack: list[nn.Module],
        untraced: dict[int, str],
        found: dict[tuple[str, str], bool],
        unchecked: dict[str, list[str]],
    ) -> None:
        super().__init__()
        self.stack, self.untraced, self.found = stack, untraced, found
        self.unchecked = unchecked

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None):
        kwargs = kwargs or {}
        if self.stack and id(self.stack[-1]) in self.untraced:
            module = getattr(func, "__module__", None) or "Tensor"
            name = f"{module}.{getattr(func, '__name__', '')}"
            is_relu = func in _RELU_FUNCS
            rounds = kwargs.get("rounding_mode") is not None  # torch.div(x, c, rounding_mode=)
            where = self.untraced[id(self.stack[-1])]
            if (
                is_relu
                or rounds
                or func in MAXPOOL_CALLS
                or is_nonlinear_name(name)
                or (func is F.batch_norm and _batch_statistics(args, kwargs))
            ):
                self.found[(where, name)] = is_relu
            elif may_act_on_batch_dim(name) and name not in self.unchecked.setdefault(where, []):
                self.unchecked[where].append(name)
        return func(*args, **kwargs)


def _batch_statistics(args: Any, kwargs: dict[str, Any]) -> bool:
    """Whether a call ``F.batch_norm(x, mean, var, weight, bias, training, ...)``
    normalises with the batch's statistics (not an affine map of each sample)."""
    training = args[5] if len(args) > 5 else kwargs.get("training", False)
    return training is not False


class CalibrationPass:
    """The converter's calibration (a mixin of the converter, whose attributes below it
    reads and fills in)."""

    report: ConversionReport
    #: Untraced forwards: id(module) -> its name.
    untraced: dict[int, str]
    #: Untraced forwards of ReLU, QCFS and max-pool subclasses: name -> what they are.
    own_forward: dict[str, str]
    input_dim: int | None
    calibration_batches: int

    def calibrate(self, body: nn.Module, data: Tensor | Iterable[Any]) -> None:
        batches = [data] if isinstance(data, Tensor) else data
        stack: list[nn.Module] = []
        found: dict[tuple[str, str], bool] = {}
        unchecked: dict[str, list[str]] = {}
        handles = []
        first: Tensor | None = None

        def push(module: nn.Module, _args: Any) -> None:
            stack.append(module)

        def pop(_module: nn.Module, _args: Any, _out: Any) -> None:
            stack.pop()

        if self.untraced:
            for module in body.modules():
                handles.append(module.register_forward_pre_hook(push))
                handles.append(module.register_forward_hook(pop, always_call=True))
        count = 0
        try:
            with torch.no_grad(), _CallWatcher(stack, self.untraced, found, unchecked):
                for batch in batches:
                    x = batch_input(batch)
                    if self.input_dim is None:
                        self.input_dim, first = x.dim(), x
                    elif x.dim() != self.input_dim:
                        raise ShapeError(
                            f"calibration batch {count} has {x.dim()} dimensions "
                            f"{tuple(x.shape)}, the first had {self.input_dim}: every batch "
                            "must be [B, ...] of the same per-sample shape"
                        )
                    body(x)
                    count += 1
        finally:
            for handle in handles:
                handle.remove()
        if count == 0:
            raise ConfigurationError("calibration_data gave no batches")
        self.calibration_batches = count
        sites = {id(m): m for m in body.modules() if isinstance(m, Site)}
        for site in sites.values():
            if site.calls > count:
                site.shared = site.calls // count
                warnings.warn(
                    f"'{site.site_name}' ({site.source}) ran {site.shared} times in each "
                    "forward pass of an untraced module: its calls share one spiking neuron "
                    "(one threshold; while streaming, its state would carry from one call to "
                    "the next). Give each call its own module, or make the module traceable "
                    "by torch.fx (which gives every call its own neuron)",
                    RuntimeWarning,
                    stacklevel=4,
                )
        for (where, func), is_relu in found.items():
            detail = (
                "relu called directly in an untraced forward"
                if is_relu
                else "nonlinear call in an untraced forward"
            )
            if where in self.own_forward:
                detail += f" ({self.own_forward[where]})"
            self.report.add(f"{where} (forward)", func, "unconverted", detail + ": not converted")
        for where, funcs in unchecked.items():
            if funcs:
                self.report.add(
                    f"{where} (forward)",
                    "forward",
                    "unverified",
                    f"calls {', '.join(funcs)} in an untraced forward: whether they keep dim 0 "
                    "the batch (into which the SNN folds time) is not checked there (make the "
                    "forward traceable by torch.fx to have them checked)",
                )
        assert first is not None
        self.probe_another_batch_size(body, first)

    def probe_another_batch_size(self, body: nn.Module, x: Tensor) -> None:
        """Run the batch-dim probes once more, on a batch of another size made from
        ``x`` (the first calibration batch; its first half, or itself twice if it has
        one row), the sites neither counting nor recording: one batch size cannot tell
        dim 0 from another dim of the same size (``x.view(x.size(1), -1)`` keeps a batch
        of as many rows as channels), two can. A forward that fails on the other size
        depends on the batch size: it is reported unconverted."""
        probes = [m for m in body.modules() if isinstance(m, BatchDimProbe)]
        open_before = [p for p in probes if p.problem is None]
        if not open_before:
            return
        rows = x.shape[0]
        other = x[: rows // 2].clone() if rows > 1 else torch.cat([x, x])  # x stays as it was
        sites = [m for m in body.modules() if isinstance(m, Site)]
        for module in sites:
            module.observing = False
        for probe in probes:
            probe.note = (
                f" (on {other.shape[0]} rows made from the first calibration batch of {rows}: "
                "a second batch size tells dim 0 from a dim of the same size)"
            )
        try:
            with torch.no_grad():
                body(other)
        except Exception as error:  # the forward depends on the batch size
            if any(p.problem is not None for p in open_before):
                return  # a probe found why (the finally clause still runs)
            message = str(error).splitlines()[0] if str(error) else ""
            self.report.add(
                "<root>",
                "forward",
                "unconverted",
                f"the forward fails on a batch of {other.shape[0]} rows made from the first "
                f"calibration batch of {rows} ({type(error).__name__}: {message[:200]}), so it "
                f"depends on the batch size; {WHY}",
            )
        finally:
            for module in sites:
                module.observing = True
            for probe in probes:
                probe.note = ""
