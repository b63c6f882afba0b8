"""Which modules :func:`~spikeflow.energy.neuromc_energy_report` prices, which are free,
and which it refuses; and DECOLLE's layers, priced by spikeflow's convention.

A DECOLLE layer (:class:`~spikeflow.learn.DECOLLELayer`, run step by step through its
``step``, not its ``forward``) is, per step, its synapse (a Linear or Conv2d: a product,
priced as any), and:

* its presynaptic traces ``Q = βQ + g_q x``, ``P = αP + g_p Q`` on each of the ``X``
  inputs of the synapse (op ``decolle.traces``, process ``with_trace``): ``4X``
  multiplications and ``2X`` additions; the input read (1 bit if spikes, else 16) and
  ``Q``, ``P`` (16 bits) read and written, at the register and the soma's potential
  SRAM;
* its membrane ``U = W P + b − R``, refractory trace ``R = α_rp R + w_rp S`` and spike
  ``S = H(U)`` over the ``N`` outputs of the synapse: NeuroMC's soma (a decaying state,
  the product's output in, a comparison, a spike out), priced as a spiking neuron's
  (``soma.forward``); with ``pool > 1`` the max pool of ``U`` as a max pool;
* backward, when its spikes get a gradient: the surrogate gradient as the soma's
  backward over the (pooled) spikes, and the pool's routing (``maxpool.backward``).
  A BPTT step (``local=False``) with ``pool > 1`` also differentiates the full-size
  spikes carried to ``R``: a soma backward over the ``N`` of them; and when the
  synapse's input ``P`` needs a gradient (BPTT: the previous layer's spikes), the
  traces' backward ``dQ += g_p dP``, ``dx = g_q dQ`` and the decays through time
  (``decolle.traces.backward``): as their forward, with 16-bit gradients in.

The readouts are Linear layers, priced as any. The layer's ``initial_state`` runs its
synapse on zeros for the membrane's shape: not priced (no work of the network).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from spikeflow.energy.neuromc_costs import Work
from spikeflow.energy.neuromc_pooling import POOLS
from spikeflow.errors import ConfigurationError

__all__ = [
    "NORMS",
    "PRODUCTS",
    "DecolleHooks",
    "free_types",
    "priced_modules",
    "unpriced_module",
]

PRODUCTS = (nn.Linear, nn.Conv1d, nn.Conv2d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_FREE = (nn.Flatten, nn.Unflatten, nn.Identity, nn.modules.dropout._DropoutNd)


def free_types() -> tuple[type[nn.Module], ...]:
    """Modules that cost nothing: reshapes, the identity, dropout (its mask is folded
    into the values the next layer reads), spikeflow's sequence dropout and spike taps."""
    from spikeflow.layers.dropout import _SequenceDropout
    from spikeflow.neurons.tap import SpikeTap

    return (*_FREE, _SequenceDropout, SpikeTap)


def _own_parameters_allowed(module: nn.Module, label: str) -> bool:
    """Whether a module's own parameters are no work: a SpikeDHS unit's search weights
    ``dgs_alpha`` outside a search stage (its main branch alone runs). In a stage, the
    branches are mixed by a softmax of them, which NeuroMC has no cost for: refused."""
    from spikeflow.models.spike_dhs_search import DGSUnit

    if not isinstance(module, DGSUnit):
        return False
    if module.searching:
        raise ConfigurationError(
            f"NeuroMC cannot price {label} (DGSUnit) in a search stage: it mixes its three "
            "branches by softmax(dgs_alpha), and NeuroMC's model has no cost for a "
            "softmax; price it outside a stage (dgs_finish_stage), its main branch alone"
        )
    return True


def unpriced_module(
    label: str, module: nn.Module, own: list[str] | None = None
) -> ConfigurationError:
    """The error naming a module NeuroMC cannot price (``own``: its own parameters)."""
    why = f"parameters {own} of its own" if own else "work NeuroMC has no cost for"
    return ConfigurationError(
        f"NeuroMC cannot price {label} ({type(module).__name__}: {why}); it prices "
        "Linear, Conv1d/Conv2d, BatchNorm1d/2d/3d, max and average "
        "pooling (VotingLayer, AdjustedAvgPool2d too), constant scales, spiking "
        "neurons (BaseNode), DECOLLE layers and attention's matmul, with Flatten, "
        "Unflatten, Identity and dropout free"
    )


def priced_modules(
    model: nn.Module, leaves: dict[nn.Module, str] | None = None
) -> dict[nn.Module, str]:
    """The modules to hook, by name; a ConfigurationError names one NeuroMC cannot price.

    A parameter-free leaf module of no priced kind (a custom module whose ``forward``
    runs ``q @ k.T`` or ``F.max_pool2d``) is, as a module with children, priced by the
    products and pools its forward runs: with ``leaves`` given it goes there (by name),
    for the run to refuse it if its forward runs none
    (:meth:`~spikeflow.energy.neuromc_run.UnpricedProducts.check_leaves`); without,
    it is refused here.
    """
    from spikeflow.event_driven.layers import EventDrivenLayer
    from spikeflow.learn.decolle import DECOLLELayer
    from spikeflow.neurons import BaseNode

    free = free_types()
    priced: dict[nn.Module, str] = {}
    inside: set[nn.Module] = set()  # a priced module's own parts (a neuron's surrogate)
    for name, module in model.named_modules():
        label = name or "(model)"
        if module in inside:
            continue
        if isinstance(module, EventDrivenLayer):  # a Linear/Conv2d, but not only one
            raise ConfigurationError(
                f"NeuroMC cannot price {label} ({type(module).__name__}): an event-driven "
                "layer runs its own neuron (a synaptic current and a membrane per output) "
                "on a standardised weight, and its backward through the spike times is no "
                "surrogate gradient; NeuroMC has a product and a soma, not this neuron"
            )
        if isinstance(module, (*PRODUCTS, *NORMS, *POOLS, BaseNode)):
            priced[module] = label
            inside.update(module.modules())
            continue
        if isinstance(module, DECOLLELayer):  # its spike: DecolleHooks
            inside.update(module.surrogate_function.modules())
        leaf = next(module.children(), None) is None
        own = [n for n, _ in module.named_parameters(recurse=False)]
        if own and _own_parameters_allowed(module, label):
            own = []
        if own:
            raise unpriced_module(label, module, own)
        if leaf and not isinstance(module, free):
            if leaves is None:
                raise unpriced_module(label, module)
            leaves[module] = label
    return priced


#: ``record(name, phase, op, work, process, dims)``.
Record = Callable[[str, str, str, Work, str, dict[str, int]], None]


def _flat_dims(n: int) -> dict[str, int]:
    return {"B": n, "T": 1, "C": 1, "K": 1, "OY": 1, "OX": 1, "FY": 1, "FX": 1}


class DecolleHooks:
    """Forward hooks pricing each DECOLLE layer's step (module docstring) through
    ``record``; ``spikes(x)`` tells 1-bit spikes; ``backward``: price the backward."""

    def __init__(self, model: nn.Module, record: Record, spikes: Callable[[Tensor], bool],
                 backward: bool, works: list) -> None:  # fmt: skip
        from spikeflow.learn.decolle import DECOLLELayer

        self.record, self.spikes, self.backward = record, spikes, backward
        self.running = 0  # layers' steps running (their max pool of U is priced here)
        self.inputs: dict[nn.Module, tuple[int, bool, tuple[int, ...]]] = {}
        self.handles = []
        self.layers = []
        for name, layer in model.named_modules():
            if isinstance(layer, DECOLLELayer):
                label = name or "(model)"
                self.layers.append(layer)
                layer.initial_state = _unpriced(layer.initial_state, works)
                layer._dynamics = self._running(layer._dynamics)
                hook = self._synapse(layer, label)
                self.handles.append(layer.synapse.register_forward_hook(hook))
                hook = self._spike(layer, label)
                self.handles.append(layer.surrogate_function.register_forward_hook(hook))

    def _running(self, dynamics: Callable[..., Any]) -> Callable[..., Any]:
        """A layer's step dynamics that count as running while they do."""

        def counted(*args: Any) -> Any:
            self.running += 1
            try:
                return dynamics(*args)
            finally:
                self.running -= 1

        return counted

    def _synapse(self, layer: nn.Module, label: str) -> Callable[..., None]:
        def hook(_module: nn.Module, args: tuple, out: Any) -> None:
            p = args[0]
            self.inputs[layer] = (p.numel(), self.spikes(p), tuple(out.shape))
            if self.backward and p.requires_grad:  # BPTT: the traces' backward
                p.register_hook(self._traces_backward(label, p.numel()))

        return hook

    def _traces_backward(self, label: str, inputs: int) -> Callable[[Tensor], None]:
        def on_grad(_grad: Tensor) -> None:
            work = Work("trace", "bp_grad", True, elements=inputs)
            dims = _flat_dims(inputs)
            self.record(label, "backward", "decolle.traces.backward", work, "with_trace", dims)

        return on_grad

    def _spike(self, layer: Any, label: str) -> Callable[..., None]:
        def hook(_module: nn.Module, args: tuple, out: Any) -> None:
            inputs, input_spikes, full = self.inputs[layer]
            n_full, n_out = _numel(full), out.numel()
            carried = layer.pool > 1 and tuple(out.shape) == full  # BPTT: S carried to R
            if not carried:
                self._forward(label, inputs, input_spikes, n_full, n_out)
            if self.backward and out.requires_grad:
                out.register_hook(self._on_grad(label, n_full, n_out, carried))

        return hook

    def _forward(self, label: str, inputs: int, input_spikes: bool, n_full: int,
                 n_out: int) -> None:  # fmt: skip
        traces = Work("trace", "fp_soma", elements=inputs, input_bits=1 if input_spikes else 16)
        dims = _flat_dims(inputs)
        self.record(label, "forward", "decolle.traces.forward", traces, "with_trace", dims)
        soma = Work("soma", "fp_soma", elements=n_full)
        self.record(label, "forward", "soma.forward", soma, "with_sg", _flat_dims(n_full))
        if n_out != n_full:  # the max pool of U (16-bit values)
            pool = Work("maxpool", "ann_fe", elements=n_out, window_inputs=n_full,
                        input_numel=n_full)  # fmt: skip
            self.record(label, "forward", "maxpool.forward", pool, "with_pool", _flat_dims(n_out))

    def _on_grad(self, label: str, n_full: int, n_out: int, carried: bool
                 ) -> Callable[[Tensor], None]:  # fmt: skip
        def on_grad(_grad: Tensor) -> None:
            soma = Work("soma", "bp_grad", True, elements=n_out)
            self.record(label, "backward", "soma.backward", soma, "with_sg", _flat_dims(n_out))
            if n_out != n_full and not carried:
                pool = Work("maxpool", "ann_be", True, elements=n_out, window_inputs=n_full,
                            input_numel=n_full)  # fmt: skip
                dims = _flat_dims(n_out)
                self.record(label, "backward", "maxpool.backward", pool, "with_pool", dims)

        return on_grad

    def remove(self) -> None:
        """Remove the hooks."""
        for handle in self.handles:
            handle.remove()
        for layer in self.layers:
            del layer.initial_state, layer._dynamics  # the class's again


def _unpriced(initial_state: Callable[[Tensor], Any], works: list) -> Callable[[Tensor], Any]:
    """A DECOLLE layer's ``initial_state`` that leaves no work in ``works``: it runs the
    synapse on zeros for the membrane's shape, no work of the network."""

    def quiet(x_t: Tensor) -> Any:
        kept = len(works)
        state = initial_state(x_t)
        del works[kept:]
        return state

    return quiet


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for size in shape:
        n *= int(size)
    return n
