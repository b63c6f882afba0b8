"""Hook monitors: record what chosen modules of a network take, give, hold and receive
as gradients, call by call.

Five monitors, with SpikingJelly's names and arguments (``spikingjelly.activation_based
.monitor``), each applying an optional function to the value before keeping it (a
firing rate instead of the spikes keeps memory small):

* :class:`OutputMonitor`: the output of every call (forward hook);
* :class:`InputMonitor`: the positional input of every call (forward pre-hook);
* :class:`AttributeMonitor`: an attribute of the module after (or before) every call,
  such as ``v_seq`` (a neuron's membrane, recorded while monitored) or ``v``;
* :class:`GradInputMonitor`, :class:`GradOutputMonitor`: the gradient of the loss with
  respect to the input or the output of every call (full backward hook).

Modules are chosen by type (``instance``; default every spiking layer, as
:func:`spikeflow.training.monitors.spiking_layers` finds them), by name (``layers``) or
by a predicate ``where(name, module)``. Records are detached by default, so a monitor
keeps no autograd graph alive. Forward calls made by :mod:`spikeflow.memory`'s
recomputation in the backward pass are not recorded. See ``docs/monitors.md``.

Example::

    with OutputMonitor(net, neurons.LIFNode, lambda s: s.mean()) as rates:
        net(x)
    print(rates.monitored_layers, rates.records)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from spikeflow._checks import check_flag
from spikeflow._compile_marks import eager_under_compile
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.memory.recompute import is_recomputing, reruns_forward
from spikeflow.training.monitors import (
    MEMBRANE_LAYER_TYPES,
    SPIKING_LAYER_TYPES,
    _claim_record,
    _release_record,
    spiking_layers,
)

__all__ = [
    "AttributeMonitor",
    "BaseMonitor",
    "GradInputMonitor",
    "GradOutputMonitor",
    "InputMonitor",
    "OutputMonitor",
    "select_modules",
]

#: A module type or a tuple of them (as ``isinstance`` takes).
Instance = type[nn.Module] | tuple[type[nn.Module], ...]
#: ``where(name, module) -> bool``: whether to monitor a submodule.
Predicate = Callable[[str, nn.Module], bool]


def _check_instance(instance: Any) -> tuple[type[nn.Module], ...]:
    types = instance if isinstance(instance, tuple) else (instance,)
    if not types or not all(isinstance(t, type) and issubclass(t, nn.Module) for t in types):
        raise ConfigurationError(
            f"instance must be an nn.Module subclass or a tuple of them, got {instance!r}"
        )
    return types


def _listing(names: Iterable[str], limit: int = 12) -> str:
    names = list(names)
    shown = ", ".join(repr(n) for n in names[:limit])
    return f"[{shown}{', ...' if len(names) > limit else ''}] ({len(names)} in all)"


def select_modules(
    net: nn.Module,
    instance: Instance | None = None,
    layers: Iterable[str] | str | None = None,
    where: Predicate | None = None,
) -> dict[str, nn.Module]:
    """The submodules of ``net`` a monitor watches, ``{name: module}``.

    Args:
        net: the network.
        instance: keep modules of this type (or types). Default: the spiking layers
            (:data:`~spikeflow.training.monitors.SPIKING_LAYER_TYPES`) when neither
            ``layers`` nor ``where`` is given, else any module.
        layers: keep these names (as ``net.named_modules()`` gives them; ``"(root)"`` is
            ``net`` itself), in the order given.
        where: keep the modules for which ``where(name, module)`` is true.

    Names and order are those of :func:`~spikeflow.training.monitors.spiking_layers`
    (module order), or of ``layers`` when given.

    Raises:
        ConfigurationError: ``net`` is not a module, a bad ``instance`` or ``where``, a
            name in ``layers`` that is not a submodule of the chosen type (the message
            lists the choices), or nothing chosen at all.
    """
    if not isinstance(net, nn.Module):
        raise ConfigurationError(f"net must be an nn.Module, got {type(net).__name__}")
    if instance is not None:
        types = _check_instance(instance)
    else:
        types = SPIKING_LAYER_TYPES if layers is None and where is None else (nn.Module,)
    found = spiking_layers(net, types)
    if layers is not None:
        wanted = [layers] if isinstance(layers, str) else list(layers)
        if not all(isinstance(n, str) for n in wanted):
            raise ConfigurationError(f"layers must be module names (str), got {wanted!r}")
        missing = [n for n in wanted if n not in found]
        if missing:
            kind = "module" if types == (nn.Module,) else "module of the chosen instance"
            raise ConfigurationError(
                f"no {kind} named {missing} in {type(net).__name__}; the choices are "
                f"{_listing(found)}"
            )
        found = {n: found[n] for n in wanted}  # (a name given twice: hooked once)
    if where is not None:
        if not callable(where):
            raise ConfigurationError(
                f"where must be a callable (name, module) -> bool, got {where!r}"
            )
        found = {n: m for n, m in found.items() if where(n, m)}
    if not found:
        raise ConfigurationError(
            f"no submodule of {type(net).__name__} matches instance={instance!r}, "
            f"layers={layers!r}, where={where!r}: nothing to monitor"
        )
    return found


def _map_tensors(fn: Callable[[Tensor], Tensor], value: Any) -> Any:
    """``fn`` applied to every tensor in ``value`` (nested tuples, lists and dicts)."""
    if isinstance(value, Tensor):
        return fn(value)
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a NamedTuple
        return type(value)(*(_map_tensors(fn, v) for v in value))
    if isinstance(value, tuple | list):
        return type(value)(_map_tensors(fn, v) for v in value)
    if isinstance(value, dict):
        return {k: _map_tensors(fn, v) for k, v in value.items()}
    return value


def _unpack_single(value: Any) -> Any:
    """A one-element tuple (a module's inputs or gradients) as its element."""
    return value[0] if isinstance(value, tuple) and len(value) == 1 else value


def _single_step(module: nn.Module) -> bool:
    """Whether a call of ``module`` is one time step (``step_mode='s'``)."""
    return getattr(module, "step_mode", "m") == "s"


class BaseMonitor:
    """What every monitor shares: the chosen modules, the records, and their lifetime.

    Attributes:
        layers: ``{name: module}`` of the watched modules.
        monitored_layers: the names of the watched modules, in module order (or in the
            order of ``layers``).
        records: every recorded value, in the order recorded (forward monitors: call
            order; gradient monitors: the order the backward pass reaches the calls,
            last call first along a chain).
        hooks: the hook handles (empty once removed).

    ``monitor[i]`` is ``records[i]``; ``monitor[name]`` the list of one module's records,
    one per call. ``len(monitor)`` counts the records. Leaving a ``with`` block calls
    :meth:`close`, which keeps the records.
    """

    def __init__(
        self,
        net: nn.Module,
        instance: Instance | None,
        layers: Iterable[str] | str | None,
        where: Predicate | None,
        function: Callable[[Any], Any] | None,
        detach: bool,
        cpu: bool,
    ) -> None:
        if function is not None and not callable(function):
            raise ConfigurationError(f"the function to apply must be callable, got {function!r}")
        owner = type(self).__name__
        self.detach = check_flag(owner, "detach", detach)
        self.cpu = check_flag(owner, "cpu", cpu)
        self.function = function
        self.layers: dict[str, nn.Module] = select_modules(net, instance, layers, where)
        self.monitored_layers: list[str] = list(self.layers)
        self.records: list[Any] = []
        self.hooks: list[RemovableHandle] = []
        # per record: its module's name and whether its call was one step
        self._record_names: list[str] = []
        self._record_single_step: list[bool] = []
        self._claimed: list[tuple[nn.Module, str]] = []
        self._enabled = True

    # -- recording ----------------------------------------------------------------------

    @eager_under_compile
    def _record(
        self, name: str, value: Any, single_step: bool = False, backward: bool = False
    ) -> None:
        """Keep ``value`` (detached, through the function, to the CPU, as asked). None
        (no tensor: an input that needs no gradient, no carried state yet) is kept as
        it is, without the function. Run eagerly under ``torch.compile`` (a graph
        break): traced, each append would guard on the length of ``records`` and
        recompile the model at every call. A forward call rerun for the backward pass
        (:mod:`spikeflow.memory`, ``torch.utils.checkpoint``) is not recorded, nor
        (``backward``: a gradient) a recomputation's: checked here, eagerly, as a traced
        check could be a constant of the graph."""
        if is_recomputing() if backward else reruns_forward():
            return
        if value is not None:
            if self.detach:
                value = _map_tensors(Tensor.detach, value)
            if self.function is not None:
                value = self.function(value)
            if self.cpu:
                value = _map_tensors(Tensor.cpu, value)
        self.records.append(value)
        self._record_names.append(name)
        self._record_single_step.append(single_step)

    # -- reading ------------------------------------------------------------------------

    @property
    def name_records_index(self) -> dict[str, list[int]]:
        """``{name: indices into records}``, for every watched module."""
        index: dict[str, list[int]] = {name: [] for name in self.monitored_layers}
        for k, name in enumerate(self._record_names):
            index[name].append(k)
        return index

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            if key not in self.layers:
                raise ConfigurationError(
                    f"{type(self).__name__} watches no module named {key!r}; it watches "
                    f"{_listing(self.monitored_layers)}"
                )
            return [r for r, n in zip(self.records, self._record_names) if n == key]
        if isinstance(key, int):
            return self.records[key]
        raise ConfigurationError(
            f"index a monitor with a record number (int) or a module name (str), got {key!r}"
        )

    def __len__(self) -> int:
        return len(self.records)

    def clear_recorded_data(self) -> None:
        """Forget every record (the hooks stay)."""
        self.records.clear()
        self._record_names.clear()
        self._record_single_step.clear()

    # -- switching ----------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        """Whether the hooks record (set it, or call :meth:`enable` / :meth:`disable`)."""
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled = check_flag(type(self).__name__, "enabled", value)

    def enable(self) -> None:
        """Record again after :meth:`disable`."""
        self._enabled = True

    def disable(self) -> None:
        """Pause recording (the hooks stay, and do nothing)."""
        self._enabled = False

    def is_enable(self) -> bool:
        """Whether the monitor records (SpikingJelly's name for :attr:`enabled`)."""
        return self._enabled

    def remove_hooks(self) -> None:
        """Remove the hooks (the records stay) and give back the neurons' ``store_v_seq``
        (``store_spike_seq``) an :class:`AttributeMonitor` of ``v_seq`` (``spike_seq``)
        turned on. Calling it again does nothing."""
        for handle in self.hooks:
            handle.remove()
        self.hooks.clear()
        for module, attribute in self._claimed:
            _release_record(module, attribute)
        self._claimed.clear()

    def close(self) -> None:
        """Stop for good: :meth:`disable` and :meth:`remove_hooks` (records stay)."""
        self.disable()
        self.remove_hooks()

    def __enter__(self) -> BaseMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(layers={_listing(self.monitored_layers, 6)}, "
            f"records={len(self.records)}, enabled={self._enabled}, "
            f"hooked={bool(self.hooks)})"
        )


class _SequenceRecords:
    """:meth:`sequence` for the monitors whose records follow the forward calls."""

    records: list[Any]
    _record_names: list[str]
    _record_single_step: list[bool]
    __getitem__: Callable[[str], list[Any]]

    def sequence(self, name: str) -> Tensor:
        """One module's records joined into one time-major tensor: the records of
        multi-step calls (``[T, B, ...]``, chunks of a streamed sequence) concatenated
        along time, those of single-step calls (``[B, ...]``) stacked as steps.

        Raises:
            ConfigurationError: no module named ``name``, or no record of it.
            DTypeError: a record that is not one tensor (a tuple of inputs, None).
            ShapeError: a multi-step record without a time axis (a function that
                reduced it), or records whose shapes do not join.
        """
        values = self[name]
        if not values:
            raise ConfigurationError(f"no record of {name!r} yet: run the network first")
        flags = [s for s, n in zip(self._record_single_step, self._record_names) if n == name]
        steps = []
        for k, (value, single) in enumerate(zip(values, flags)):
            if not isinstance(value, Tensor):
                raise DTypeError(
                    f"record {k} of {name!r} is a {type(value).__name__}, not a tensor: "
                    "sequence() joins tensors (index the monitor for other records)"
                )
            if not single and value.dim() == 0:
                raise ShapeError(
                    f"record {k} of {name!r}, a multi-step call, has no time axis (shape "
                    "()): the function applied reduced it; keep the time axis to join"
                )
            steps.append(value.unsqueeze(0) if single else value)
        try:
            return torch.cat(steps)
        except RuntimeError as exc:
            shapes = [tuple(s.shape) for s in steps]
            raise ShapeError(f"the records of {name!r} do not join in time: {shapes}") from exc


class OutputMonitor(_SequenceRecords, BaseMonitor):
    """Records the output of every call of the chosen modules.

    Args:
        net: the network.
        instance: module type(s) to watch; default every spiking layer (SpikingJelly:
            ``type(net)``).
        function_on_output: applied to each output before it is kept (default: kept
            as it is), e.g. ``lambda s: s.mean()`` for a firing rate (of a layer whose
            output is spikes: a neuron with an analog output, LIAF, returns ``act(H)``;
            its spikes are ``spike_seq``, which :class:`AttributeMonitor` records).
        layers, where: choose modules by name or predicate (:func:`select_modules`).
        detach: keep the output detached from the autograd graph (default True;
            SpikingJelly keeps the graph). ``False``: the records hold the graph alive.
        cpu: move what is kept to the CPU (after the function).

    A single-step call records ``[B, ...]``, a multi-step call ``[T, B, ...]``;
    :meth:`sequence` joins one module's records in time.
    """

    def __init__(
        self,
        net: nn.Module,
        instance: Instance | None = None,
        function_on_output: Callable[[Any], Any] | None = None,
        *,
        layers: Iterable[str] | str | None = None,
        where: Predicate | None = None,
        detach: bool = True,
        cpu: bool = False,
    ) -> None:
        super().__init__(net, instance, layers, where, function_on_output, detach, cpu)
        for name, module in self.layers.items():
            self.hooks.append(module.register_forward_hook(self._hook(name)))

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if self._enabled:
                self._record(name, _unpack_single(output), _single_step(module))

        return hook


class InputMonitor(_SequenceRecords, BaseMonitor):
    """Records the positional input of every call of the chosen modules, before it
    runs: one tensor, or the tuple of them for a module with several inputs.

    Arguments as :class:`OutputMonitor` (``function_on_input``). Detached records share
    memory with the input: pass ``function_on_input=torch.clone`` to keep a copy when
    something modifies the input in place later.
    """

    def __init__(
        self,
        net: nn.Module,
        instance: Instance | None = None,
        function_on_input: Callable[[Any], Any] | None = None,
        *,
        layers: Iterable[str] | str | None = None,
        where: Predicate | None = None,
        detach: bool = True,
        cpu: bool = False,
    ) -> None:
        super().__init__(net, instance, layers, where, function_on_input, detach, cpu)
        for name, module in self.layers.items():
            self.hooks.append(module.register_forward_pre_hook(self._hook(name)))

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            if self._enabled:
                self._record(name, _unpack_single(args), _single_step(module))

        return hook


class AttributeMonitor(BaseMonitor):
    """Records ``module.<attribute_name>`` after (or before) every call of the chosen
    modules.

    Args:
        attribute_name: the attribute, e.g. ``"v_seq"`` (the membrane after reset of
            every step, ``[T, B, ...]``; ``[1, B, ...]`` for a single-step call),
            ``"spike_seq"`` (the spikes of a neuron with an analog output,
            :class:`~spikeflow.neurons.LIAFNode`, shaped alike) or ``"v"`` (the membrane
            carried to the next call: only while streaming, else None).
        pre_forward: read it before the call instead of after.
        net, instance, layers, where, detach, cpu: as :class:`OutputMonitor`.
        function_on_attribute: applied to each value before it is kept. A value of None
            is kept as None, without the function.

    Watching ``v_seq`` after the call turns on ``store_v_seq`` of the watched neurons
    (:data:`~spikeflow.training.monitors.MEMBRANE_LAYER_TYPES`) while attached, as
    :class:`~spikeflow.training.SpikeMonitor` does: a neuron that did not record its
    membrane already drops it after the monitors read it, and :meth:`remove_hooks`
    restores the setting; watching ``spike_seq`` does the same with
    ``store_spike_seq``.

    Raises:
        ConfigurationError: a chosen module without that attribute.
    """

    def __init__(
        self,
        attribute_name: str,
        pre_forward: bool,
        net: nn.Module,
        instance: Instance | None = None,
        function_on_attribute: Callable[[Any], Any] | None = None,
        *,
        layers: Iterable[str] | str | None = None,
        where: Predicate | None = None,
        detach: bool = True,
        cpu: bool = False,
    ) -> None:
        if not isinstance(attribute_name, str) or not attribute_name:
            raise ConfigurationError(f"attribute_name must be a name (str), got {attribute_name!r}")
        super().__init__(net, instance, layers, where, function_on_attribute, detach, cpu)
        self.attribute_name = attribute_name
        self.pre_forward = check_flag(type(self).__name__, "pre_forward", pre_forward)
        lacking = [n for n, m in self.layers.items() if not hasattr(m, attribute_name)]
        if lacking:
            raise ConfigurationError(
                f"AttributeMonitor: the modules {_listing(lacking)} have no attribute "
                f"{attribute_name!r}"
            )
        for name, module in self.layers.items():
            if self.pre_forward:
                self.hooks.append(module.register_forward_pre_hook(self._hook(name)))
                continue
            self.hooks.append(module.register_forward_hook(self._hook(name)))
            if attribute_name == "v_seq" and isinstance(module, MEMBRANE_LAYER_TYPES):
                _claim_record(module, "v_seq")  # after the hook: dropped after it reads
                self._claimed.append((module, "v_seq"))
            elif attribute_name == "spike_seq" and hasattr(module, "store_spike_seq"):
                _claim_record(module, "spike_seq")  # LIAF's spike decision
                self._claimed.append((module, "spike_seq"))

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, *args: Any) -> None:
            if self._enabled:
                self._record(name, getattr(module, self.attribute_name))

        return hook


class _GradMonitor(BaseMonitor):
    """A full backward hook on every chosen module, recording ``grad_input`` or
    ``grad_output``."""

    _which = 0  # 0: grad_input, 1: grad_output

    def __init__(
        self,
        net: nn.Module,
        instance: Instance | None,
        function: Callable[[Any], Any] | None,
        layers: Iterable[str] | str | None,
        where: Predicate | None,
        detach: bool,
        cpu: bool,
    ) -> None:
        super().__init__(net, instance, layers, where, function, detach, cpu)
        for name, module in self.layers.items():
            self.hooks.append(module.register_full_backward_hook(self._hook(name)))

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, grad_input: Any, grad_output: Any) -> None:
            if self._enabled:
                grads = (grad_input, grad_output)[self._which]
                self._record(name, _unpack_single(grads), backward=True)

        return hook


class GradInputMonitor(_GradMonitor):
    """Records the gradient of the loss with respect to the input of every call of the
    chosen modules (what the module passes back to its input), in the order the
    backward pass computes them: for a module called several times along a chain (the
    steps of a stream), the last call first.

    Arguments as :class:`OutputMonitor` (``function_on_grad_input``). An input that
    needs no gradient gives None. It uses ``register_full_backward_hook``: a module
    whose output is then modified in place raises PyTorch's error, and under
    ``torch.compile`` the module runs eagerly (a graph break; ``fullgraph=True``
    raises).
    """

    _which = 0

    def __init__(
        self,
        net: nn.Module,
        instance: Instance | None = None,
        function_on_grad_input: Callable[[Any], Any] | None = None,
        *,
        layers: Iterable[str] | str | None = None,
        where: Predicate | None = None,
        detach: bool = True,
        cpu: bool = False,
    ) -> None:
        super().__init__(net, instance, function_on_grad_input, layers, where, detach, cpu)


class GradOutputMonitor(_GradMonitor):
    """Records the gradient of the loss with respect to the output of every call of the
    chosen modules, in the order of :class:`GradInputMonitor` (and with its notes).

    Arguments as :class:`OutputMonitor` (``function_on_grad_output``).
    """

    _which = 1

    def __init__(
        self,
        net: nn.Module,
        instance: Instance | None = None,
        function_on_grad_output: Callable[[Any], Any] | None = None,
        *,
        layers: Iterable[str] | str | None = None,
        where: Predicate | None = None,
        detach: bool = True,
        cpu: bool = False,
    ) -> None:
        super().__init__(net, instance, function_on_grad_output, layers, where, detach, cpu)
