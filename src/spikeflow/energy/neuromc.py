"""NeuroMC's energy of one training step (or one forward pass) of a spiking network.

Li et al.'s NeuroMC (arXiv 2412.05302; Nature Communications 2026,
doi:10.1038/s41467-026-70586-x) trains SNNs on chip: each core has a forward engine, a
backward engine and a weight-gradient engine over registers and per-core SRAMs, with
shared 2 MB (batch-norm statistics) and 6 MB (optimizer state) SRAMs.
:func:`neuromc_energy_report` runs the model once as it is (its real input), and, given
a loss and a target, the backward pass, and given an optimizer its update (priced, not
applied), and prices every layer's work on those engines with the released model's
costs (:mod:`spikeflow.energy.neuromc_costs`; SpikingJelly 2.0's
``estimate_neuromc_runtime_energy``)::

    report = neuromc_energy_report(model, x, target=y, loss_fn=F.mse_loss, optimizer=opt)
    report.total, report.compute, report.memory       # joules of the step (the batch)
    report.by_phase()                                  # forward / backward / optimizer
    print(report)                                      # per layer and phase

Priced: ``nn.Linear``, ``nn.Conv1d``/``nn.Conv2d`` (a grouped one as its ``G``
independent convolutions), ``nn.BatchNorm1d/2d/3d`` (spikeflow's sequence layers are
subclasses) and the declared spiking neurons
(:class:`~spikeflow.neurons.BaseNode`: NeuroMC's soma); max and average pooling,
:class:`~spikeflow.layers.VotingLayer`, ``AdjustedAvgPool2d`` and constant scales
(:mod:`spikeflow.energy.neuromc_pooling`) and DECOLLE's layers
(:mod:`spikeflow.energy.neuromc_modules`) by spikeflow's convention (the released model
has no cost for them).
Reshapes (``Flatten``, ``Unflatten``, ``Identity``), dropout (its kept spikes stay
spikes) and containers cost nothing; a container's own elementwise arithmetic (a
residual sum) is not priced, but its products of two activations (an attention's
``Q Kᵀ`` and ``· V`` by ``matmul``/``mm``/``bmm``) are, as a Linear's
(:mod:`spikeflow.energy.neuromc_matmul`), and so are its pooling functions, as the
pooling modules. Any other module is a
:class:`ConfigurationError` naming it, before anything runs; so are other products run
outside the priced layers (:mod:`spikeflow.energy.neuromc_run`), after the forward.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from spikeflow.energy.neuromc_costs import NeuroMCMemory, Priced, Work, check_memories, price
from spikeflow.energy.neuromc_matmul import (
    MatmulShape,
    matmul_backward_works,
    matmul_forward_work,
)
from spikeflow.energy.neuromc_modules import (
    NORMS,
    PRODUCTS,
    DecolleHooks,
    free_types,
    priced_modules,
    unpriced_module,
)
from spikeflow.energy.neuromc_optim import check_optimizer, optimizer_works
from spikeflow.energy.neuromc_pooling import (
    POOLS,
    is_max_pool,
    pool_dims,
    pool_kind,
    pool_windows,
)
from spikeflow.energy.neuromc_run import UnpricedProducts, eager, preserved
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.memory.recompute import reruns_forward

__all__ = ["NeuroMCReport", "NeuroMCWork", "neuromc_energy_report"]

_PRIMITIVES = ("mux", "add", "mul", "comp", "sqrt")


@dataclass
class NeuroMCWork:
    """One priced piece of work: a layer's pass on one engine, or the optimizer's update.

    Attributes:
        name: the module's name in the model (``"(optimizer)"`` for the update).
        phase: ``"forward"``, ``"backward"`` or ``"optimizer"``.
        op: what ran: ``linear.forward``, ``conv.backward.grad_input``,
            ``conv.backward.grad_weight``, ``soma.forward``, ``bn.backward``, ``sgd``, ...
        engine: the NeuroMC core type (``fp_soma``, ``ann_fe``, ``bp_grad``, ``wg``, ...).
        process: ``with_nothing`` (a product), ``with_sg`` (a soma), ``with_bn``,
            ``with_opt``: the released model's process keys.
        dims: the loop dims ``B, T, C, K, OY, OX, FY, FX``.
        priced: its operations, memory bits and joules.
    """

    name: str
    phase: str
    op: str
    engine: str
    process: str
    dims: dict[str, int]
    priced: Priced

    @property
    def memory(self) -> float:
        """Joules of its memory traffic."""
        return sum(self.priced.base_j.values()) + sum(self.priced.extra_j.values())

    @property
    def compute(self) -> float:
        """Joules of its MACs and elementwise operations."""
        return self.priced.mac_j + self.priced.ops_j

    @property
    def total(self) -> float:
        """Joules in all."""
        return self.compute + self.memory


def _sum_by(works: list[NeuroMCWork], key: Callable[[NeuroMCWork], str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for work in works:
        out[key(work)] = out.get(key(work), 0.0) + work.total
    return out


@dataclass
class NeuroMCReport:
    """NeuroMC's energy of one run (see :mod:`spikeflow.energy.neuromc`), in joules for
    the whole batch of ``samples``: ``works`` hold each priced piece of work."""

    works: list[NeuroMCWork]
    samples: int
    memories: Mapping[str, NeuroMCMemory] = field(repr=False)

    @property
    def mac_energy(self) -> float:
        """Joules of the MACs of the products."""
        return sum(w.priced.mac_j for w in self.works)

    @property
    def ops_energy(self) -> float:
        """Joules of the elementwise operations (somas, batch norm, optimizer)."""
        return sum(w.priced.ops_j for w in self.works)

    @property
    def base_memory(self) -> float:
        """Joules of the products' dataflow through registers and SRAMs."""
        return sum(sum(w.priced.base_j.values()) for w in self.works)

    @property
    def extra_memory(self) -> float:
        """Joules of the elementwise work's variables' reads and writes."""
        return sum(sum(w.priced.extra_j.values()) for w in self.works)

    @property
    def compute(self) -> float:
        """``mac_energy + ops_energy``."""
        return self.mac_energy + self.ops_energy

    @property
    def memory(self) -> float:
        """``base_memory + extra_memory``."""
        return self.base_memory + self.extra_memory

    @property
    def total(self) -> float:
        """Joules of the run: ``compute + memory``."""
        return self.compute + self.memory

    def by_phase(self) -> dict[str, float]:
        """Joules by phase (``forward``, ``backward``, ``optimizer``)."""
        return _sum_by(self.works, lambda w: w.phase)

    def by_op(self) -> dict[str, float]:
        """Joules by operation (``conv.forward``, ``soma.backward``, ``sgd``, ...)."""
        return _sum_by(self.works, lambda w: w.op)

    def by_engine(self) -> dict[str, float]:
        """Joules by NeuroMC core type."""
        return _sum_by(self.works, lambda w: w.engine)

    def by_process(self) -> dict[str, float]:
        """Joules by process key."""
        return _sum_by(self.works, lambda w: w.process)

    def by_layer(self) -> dict[str, float]:
        """Joules by module name (all its phases)."""
        return _sum_by(self.works, lambda w: w.name)

    def memory_energy(self) -> dict[tuple[str, str], float]:
        """Joules by ``(level, direction)``: levels ``reg`` and ``sram``."""
        out: dict[tuple[str, str], float] = {}
        for work in self.works:
            for part in (work.priced.base_j, work.priced.extra_j):
                for key, value in part.items():
                    out[key] = out.get(key, 0.0) + value
        return out

    def memory_bits(self) -> dict[tuple[str, str], int]:
        """Bits moved by ``(level, direction)``."""
        out: dict[tuple[str, str], int] = {}
        for work in self.works:
            for key, value in work.priced.bits.items():
                out[key] = out.get(key, 0) + value
        return out

    def primitives(self) -> dict[str, int]:
        """Counts of MACs and of the elementwise mux, add, mul, comp and sqrt."""
        out = {"mac": sum(w.priced.macs for w in self.works)}
        for name in _PRIMITIVES:
            out[name] = sum(w.priced.ops[name] for w in self.works)
        return out

    def __str__(self) -> str:
        rows: dict[tuple[str, str], float] = {}
        for work in self.works:
            rows[(work.name, work.phase)] = rows.get((work.name, work.phase), 0.0) + work.total
        width = max([len("layer"), *(len(name) for name, _ in rows)])
        lines = [f"{'layer':<{width}} {'phase':<9} {'nJ':>12}"]
        lines += [f"{n:<{width}} {p:<9} {j * 1e9:>12.4g}" for (n, p), j in rows.items()]
        phases = ", ".join(f"{p} {j * 1e6:.4g} µJ" for p, j in self.by_phase().items())
        lines.append(
            f"total: {self.total * 1e6:.4g} µJ for {self.samples} samples ({phases}); "
            f"compute {self.compute * 1e6:.4g} µJ, memory {self.memory * 1e6:.4g} µJ"
        )
        return "\n".join(lines)


def _is_spikes(x: Tensor) -> bool:
    """1-bit spikes: a bool tensor or every entry 0 or 1."""
    if x.dtype == torch.bool:
        return True
    return x.numel() > 0 and bool(((x == 0) | (x == 1)).all())


def _steps(module: nn.Module, x: Tensor) -> int:
    """``T``: the leading dim of a multi-step module's input, else 1."""
    return int(x.shape[0]) if getattr(module, "step_mode", "s") == "m" and x.dim() >= 2 else 1


def _dims(bt: int, steps: int, c: int, k: int, oy: int = 1, ox: int = 1,
          fy: int = 1, fx: int = 1) -> dict[str, int]:  # fmt: skip
    return {"B": bt // steps, "T": steps, "C": c, "K": k, "OY": oy, "OX": ox, "FY": fy, "FX": fx}


def _product_dims(module: nn.Module, x: Tensor, out: Tensor) -> dict[str, int]:
    """Loop dims of a Linear or Conv1d/2d call (``B·T`` all the rows or images it ran;
    ``C``, ``K`` one group's channels and ``G`` the groups of a grouped convolution)."""
    steps = _steps(module, x)
    if isinstance(module, nn.Linear):
        return _dims(out.numel() // module.out_features, steps, module.in_features,
                     module.out_features)  # fmt: skip
    spatial = tuple(out.shape[-(module.weight.dim() - 2) :])
    kernel = tuple(module.kernel_size)
    oy, ox = (spatial[0], 1) if len(spatial) == 1 else spatial
    fy, fx = (kernel[0], 1) if len(kernel) == 1 else kernel
    bt = out.numel() // (module.out_channels * oy * ox)
    g = module.groups  # one group's channels (and G) for a grouped convolution
    d = _dims(bt, steps, module.in_channels // g, module.out_channels // g, oy, ox, fy, fx)
    if g > 1:
        d["G"] = g
    return d


def _macs(d: dict[str, int]) -> int:
    return d["B"] * d["T"] * d["C"] * d["K"] * d["OY"] * d["OX"] * d["FY"] * d["FX"]


class _Recorder:
    """Forward hooks that price each call, and (training) tensor hooks on the outputs
    that price the backward when the output's gradient arrives."""

    def __init__(self, names: dict[nn.Module, str], memories: Mapping[str, NeuroMCMemory],
                 reuse: bool, backward: bool) -> None:  # fmt: skip
        self.names, self.memories, self.reuse, self.backward = names, memories, reuse, backward
        self.works: list[NeuroMCWork] = []
        self.passed: dict[int, Tensor] = {}  # spikes a dropout scaled (kept alive: ids)

    def spikes(self, x: Tensor) -> bool:
        """1-bit spikes: 0/1 entries, or the output of a free module (a dropout scaling
        kept spikes by ``1/(1 − p)``, a reshape) fed spikes."""
        return self.passed.get(id(x)) is x or _is_spikes(x)

    def pass_through(self, module: nn.Module, args: tuple, out: Any) -> None:
        """A free module's hook: its output is spikes when its input was."""
        if args and isinstance(args[0], Tensor) and isinstance(out, Tensor):
            if self.spikes(args[0]):
                self.passed[id(out)] = out

    def add(self, module: nn.Module, phase: str, op: str, work: Work, process: str,
            dims: dict[str, int]) -> None:  # fmt: skip
        self.record(self.names[module], phase, op, work, process, dims)

    def record(self, name: str, phase: str, op: str, work: Work, process: str,
               dims: dict[str, int]) -> None:  # fmt: skip
        """Price ``work`` and keep it under ``name``."""
        priced = price(work, self.memories)
        self.works.append(NeuroMCWork(name, phase, op, work.engine, process, dims, priced))

    def hook(self, module: nn.Module, args: tuple, out: Any) -> None:
        if not args or not isinstance(args[0], Tensor) or not isinstance(out, Tensor):
            raise ShapeError(
                f"NeuroMC: {self.names[module]} ({type(module).__name__}) must take and "
                "return one tensor"
            )
        x = args[0]
        spikes = self.spikes(x)
        if reruns_forward():  # a checkpoint's recomputation: its forward was priced once
            pass  # (reentrant: the first run was gradient-free; the backward hooks are here)
        elif isinstance(module, PRODUCTS):
            self._product(module, x, out, spikes)
        elif isinstance(module, NORMS):
            self._norm(module, x, out, False, spikes)
        elif isinstance(module, POOLS):
            self._pool(module, x, out, False, spikes)
            if spikes and is_max_pool(module):  # the max of scaled spikes is one of them
                self.passed[id(out)] = out
        else:
            self._soma(module, x, out, backward=False)
        if self.backward and out.requires_grad:
            out.register_hook(self._on_grad(module, x, out, spikes))

    def matmul(self, name: str, a: Tensor, b: Tensor, out: Tensor, rerun: bool = False) -> None:
        """Price ``out = a @ b``, run in module ``name`` outside the priced layers (not
        again when ``rerun``), and (training) its backward when ``out``'s gradient
        arrives (neuromc_matmul)."""
        shape, spikes = MatmulShape(a, b), self.spikes(a)
        if not rerun:
            self.record(name, "forward", "matmul.forward", matmul_forward_work(shape, spikes),
                        "with_nothing", shape.dims())  # fmt: skip
        if not (self.backward and out.requires_grad):
            return
        grads = (a.requires_grad, b.requires_grad)

        def on_grad(_grad: Tensor) -> None:
            for op, work in matmul_backward_works(shape, spikes, *grads):
                self.record(name, "backward", op, work, "with_nothing", shape.dims())

        out.register_hook(on_grad)

    def functional_pool(self, name: str, pool: nn.Module, x: Tensor, out: Tensor,
                        rerun: bool = False) -> None:  # fmt: skip
        """Price a pooling function run in module ``name`` (as the module ``pool``; not
        again when ``rerun``), and (training) its backward when ``out``'s gradient
        arrives."""
        spikes = self.spikes(x)
        if not rerun:
            self._pool(pool, x, out, False, spikes, name)
        if spikes and is_max_pool(pool):
            self.passed[id(out)] = out
        if self.backward and out.requires_grad:
            x_, out_ = x.detach(), out.detach()
            out.register_hook(lambda _grad: self._pool(pool, x_, out_, True, spikes, name))

    def _on_grad(self, module: nn.Module, x: Tensor, out: Tensor, spikes: bool
                 ) -> Callable[[Tensor], None]:  # fmt: skip
        shapes = (x.detach(), out.detach(), x.requires_grad)

        def on_grad(_grad: Tensor) -> None:
            x_, out_, needs_input_grad = shapes
            if isinstance(module, PRODUCTS):
                self._product_backward(module, x_, out_, needs_input_grad, spikes)
            elif isinstance(module, POOLS):  # no weights: its input needs the gradient
                self._pool(module, x_, out_, True, spikes)
            elif isinstance(module, NORMS):
                self._norm(module, x_, out_, True, spikes)
            else:
                self._soma(module, x_, out_, backward=True)

        return on_grad

    def _kind(self, module: nn.Module) -> str:
        return "linear" if isinstance(module, nn.Linear) else "conv"

    def _product(self, module: nn.Module, x: Tensor, out: Tensor, spikes: bool) -> None:
        d = _product_dims(module, x, out)
        g = d.get("G", 1)  # a grouped convolution: one group's numbers, G times
        work = Work("mac", "fp_soma" if spikes else "ann_fe", macs=_macs(d), reduce=(d["C"], 1),
                    taps=d["FY"] * d["FX"], weight_numel=module.weight.numel() // g,
                    output_numel=out.numel() // g, input_bits=1 if spikes else 16,
                    reuse=self.reuse, groups=g)  # fmt: skip
        self.add(module, "forward", f"{self._kind(module)}.forward", work, "with_nothing", d)

    def _product_backward(self, module: nn.Module, x: Tensor, out: Tensor,
                          needs_input_grad: bool, spikes: bool) -> None:  # fmt: skip
        d, kind = _product_dims(module, x, out), self._kind(module)
        taps, g = d["FY"] * d["FX"], d.get("G", 1)
        weights = module.weight.numel() // g  # one group's
        if needs_input_grad:  # dX = W^T dY on the backward engine, reducing over K
            work = Work("mac", "bp_grad" if spikes else "ann_be", True, _macs(d),
                        (d["K"], 1), taps, weights, x.numel() // g, groups=g)  # fmt: skip
            self.add(module, "backward", f"{kind}.backward.grad_input", work, "with_nothing", d)
        if module.weight.requires_grad:  # dW = dY X^T on the weight-gradient engine
            work = Work("mac", "wg" if spikes else "ann_we", True, _macs(d), (d["C"], d["K"]),
                        taps, out.numel() // g, weights, 1 if spikes else 16,
                        groups=g)  # fmt: skip
            self.add(module, "backward", f"{kind}.backward.grad_weight", work, "with_nothing", d)

    def _norm(self, module: nn.Module, x: Tensor, out: Tensor, backward: bool,
              spikes: bool) -> None:  # fmt: skip
        d = _norm_dims(module, x)
        if backward:
            engine = "bp_bn" if spikes else "ann_bn_bp"
        else:
            engine = "fp_bn" if spikes else "ann_bn"
        work = Work("norm", engine, backward, elements=out.numel(), channel_steps=d["C"] * d["T"])
        phase = "backward" if backward else "forward"
        self.add(module, phase, f"bn.{phase}", work, "with_bn", d)

    def _pool(self, module: nn.Module, x: Tensor, out: Tensor, backward: bool,
              spikes: bool, name: str | None = None) -> None:  # fmt: skip
        kind = pool_kind(module)
        if backward:
            engine = "bp_grad" if spikes else "ann_be"
        else:
            engine = "fp_soma" if spikes else "ann_fe"
        windows = pool_windows(module, x, out)
        work = Work(kind, engine, backward, elements=out.numel(), window_inputs=windows,
                    input_numel=x.numel(), input_bits=1 if spikes else 16)  # fmt: skip
        steps, pooled = _steps(module, out), pool_dims(module)
        if pooled == 0:  # a scale: its elements
            d = _dims(out.numel(), 1, 1, 1)
        else:
            spatial = [int(n) for n in out.shape[out.dim() - pooled :]]
            lead = out.dim() - pooled - 1  # the channel dim, if there is one
            multi = getattr(module, "step_mode", "s") == "m"
            c = int(out.shape[lead]) if lead >= 1 + multi else 1  # after [T,] B
            oy, ox = spatial[0], math.prod(spatial[1:])
            d = _dims(out.numel() // (c * oy * ox), steps, c, c, oy, ox)
            d["FY"] = round(windows / max(out.numel(), 1))  # the mean window, for the record
        phase = "backward" if backward else "forward"
        process = "with_scale" if kind == "scale" else "with_pool"
        name = self.names[module] if name is None else name
        self.record(name, phase, f"{kind}.{phase}", work, process, d)

    def _soma(self, module: nn.Module, x: Tensor, out: Tensor, backward: bool) -> None:
        steps = _steps(module, out)
        lead = 2 if getattr(module, "step_mode", "s") == "m" else 1
        c = int(out.shape[lead]) if out.dim() > lead else 1
        d = _dims(out.numel() // (c * _inner(out, lead)), steps, c, c, _inner(out, lead))
        engine = "bp_grad" if backward else "fp_soma"
        work = Work("soma", engine, backward, elements=out.numel())
        phase = "backward" if backward else "forward"
        self.add(module, phase, f"soma.{phase}", work, "with_sg", d)


#: The dims of one step's batch a batch norm takes ([B, C] and [B, C, L] for 1-d: the
#: larger), by its kind.
_NORM_STEP_DIMS = {nn.BatchNorm1d: 3, nn.BatchNorm2d: 4, nn.BatchNorm3d: 5}


def _norm_dims(module: nn.Module, x: Tensor) -> dict[str, int]:
    """A batch norm's loop dims; ``C·T`` its statistics (``T`` the steps normalised
    apart)."""
    from spikeflow.layers.attention import FeatureBatchNorm

    c = int(module.num_features)
    if isinstance(module, FeatureBatchNorm):  # one [rows, D] batch: all steps together
        return _dims(x.numel() // c, 1, c, c)
    steps = _steps(module, x)
    if steps == 1 and x.dim() == _NORM_STEP_DIMS[_norm_kind(module)] + 1 and x.shape[2] == c:
        steps = int(x.shape[0])  # a whole [T, B, C, ...] sequence, normalised per step
    lead = 2 if steps > 1 or getattr(module, "step_mode", "s") == "m" else 1
    inner = _inner(x, lead) if x.dim() > lead and x.shape[lead] == c else 1
    return _dims(x.numel() // (c * inner), steps, c, c, inner)


def _norm_kind(module: nn.Module) -> type[nn.Module]:
    return next(kind for kind in _NORM_STEP_DIMS if isinstance(module, kind))


def _inner(x: Tensor, lead: int) -> int:
    """The product of the dims after the channel dim ``lead`` (1 if none)."""
    n = 1
    for size in x.shape[lead + 1 :]:
        n *= int(size)
    return n


def neuromc_energy_report(
    model: nn.Module,
    x: Tensor,
    target: Any = None,
    loss_fn: Callable[[Any, Any], Tensor] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    samples: int | None = None,
    batch_first: bool = False,
    reuse_weights: bool = False,
    memories: Mapping[str, NeuroMCMemory] | None = None,
) -> NeuroMCReport:
    """Run ``model(x)`` once and price it on NeuroMC (:mod:`spikeflow.energy.neuromc`).

    With ``loss_fn`` (and ``target``) the backward of ``loss_fn(model(x), target)`` (a
    scalar) runs and is priced (the input and weight gradients of each layer whose
    output got a gradient, each neuron's, batch norm's and pooling's backward); with
    ``optimizer`` (SGD without Nesterov, dampening or maximize; Adam; AdamW) its update
    of every parameter of ``model`` that got a gradient is priced but not applied.
    Afterwards the parameters' ``.grad``, the buffers (batch norm's running statistics),
    the optimizer's state and the random number generators are as before; the neurons'
    state is reset (before and after); train/eval mode is kept.

    ``x`` is time-major ``[T, B, ...]``, as spikeflow's multi-step layers take it;
    ``batch_first=True`` reads it as ``[B, T, ...]`` (a DataLoader's batch) and runs the
    model on it made time-major. ``samples``: the batch the joules are for (default
    ``B``: ``x.shape[1]``, or ``x.shape[0]`` with ``batch_first``).

    ``reuse_weights``: a layer's weights stay in its engine's weight SRAM from an earlier
    pass when they fit (the forward reads no weights). ``memories``: other memory costs
    (every name of :data:`~spikeflow.energy.neuromc_costs.NEUROMC_MEMORIES`).

    Raises:
        ConfigurationError: a module NeuroMC cannot price (named), matrix products run
            outside the priced layers (named), an optimizer it does not model, an
            optimizer or target without ``loss_fn``, a loss with no gradient to
            propagate, bad ``samples`` or ``memories``.
        ShapeError: ``x`` is not a tensor of 2 or more dims; ``loss_fn`` did not return
            a scalar tensor.
    """
    from spikeflow.functional import reset_net

    if not isinstance(x, Tensor) or x.dim() < 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        layout = "[B, T, ...]" if batch_first else "[T, B, ...]"
        raise ShapeError(f"neuromc_energy_report: x must be a tensor {layout}, got {shape}")
    if loss_fn is None and (optimizer is not None or target is not None):
        what = "optimizer" if optimizer is not None else "target"
        raise ConfigurationError(f"neuromc_energy_report: {what} needs loss_fn (a backward)")
    if loss_fn is not None and target is None:
        raise ConfigurationError("neuromc_energy_report: loss_fn needs target")
    if optimizer is not None:
        check_optimizer(optimizer)
    if batch_first:
        x = x.transpose(0, 1)
    samples = int(x.shape[1]) if samples is None else samples
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ConfigurationError(
            f"neuromc_energy_report: samples must be a positive integer, got {samples!r}"
        )
    memories = check_memories(memories)
    leaves: dict[nn.Module, str] = {}  # priced by their products and pools, if any
    names = priced_modules(model, leaves)
    training = loss_fn is not None
    recorder = _Recorder(names, memories, bool(reuse_weights), training)
    handles = [m.register_forward_hook(recorder.hook) for m in names]
    free = free_types()
    handles += [m.register_forward_hook(recorder.pass_through)
                for m in model.modules() if isinstance(m, free)]  # fmt: skip
    decolle = DecolleHooks(model, recorder.record, recorder.spikes, training, recorder.works)
    watch = UnpricedProducts(model, names, recorder.matmul, recorder.functional_pool,
                             busy=lambda: decolle.running > 0)  # fmt: skip
    try:
        reset_net(model)
        with preserved(model, x.device), torch.set_grad_enabled(training):
            with eager(), watch:  # a compiled model too: the hooks see every call
                out = model(x)
            watch.check()
            watch.check_leaves(leaves, unpriced_module)
            if loss_fn is not None:
                watch.backward = True  # a checkpoint's recomputation, seen again
                with eager():
                    _backward(loss_fn(out, target))
            if optimizer is not None:
                stepped = {p for p in model.parameters() if p.grad is not None}
                for op, work, dims in optimizer_works(optimizer, stepped):
                    recorder.record("(optimizer)", "optimizer", op, work, "with_opt", dims)
    finally:
        watch.remove()
        decolle.remove()
        for handle in handles:
            handle.remove()
        reset_net(model)
    return NeuroMCReport(recorder.works, samples, memories)


def _backward(loss: Any) -> None:
    """``loss.backward()`` of a scalar loss that has a gradient to propagate."""
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        got = f"shape {tuple(loss.shape)}" if isinstance(loss, Tensor) else type(loss).__name__
        raise ShapeError(
            f"neuromc_energy_report: loss_fn must return a scalar tensor (the batch's loss), "
            f"got {got}; reduce it (.mean() or .sum())"
        )
    if not loss.requires_grad:
        raise ConfigurationError(
            "neuromc_energy_report: the loss needs no gradient (no parameter that requires "
            "one and no input that does): there is no backward to price"
        )
    loss.reshape(()).backward()
