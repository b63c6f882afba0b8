"""Shared helpers of the benchmark scripts: machine info, timing, and one LIF per library.

Every library's LIF is built here from one :class:`LIFParams`, so the scripts time the
same computation everywhere. Each :class:`Runner` is a callable ``x [T, ...] -> spikes
[T, ...]`` that starts from a fresh state on every call (the way spikeflow's multi-step
neurons behave): the peers' state resets are part of their call.

Semantic mapping (spikeflow's ``LIFNode(tau, decay_input=True, v_threshold, v_reset=0)``
is the reference; the README has the full table):

- spikingjelly ``LIFNode``: the same equations, the same Sigmoid(alpha=4) surrogate, the
  same ``H >= theta`` firing, gradient through the reset: identical spikes and gradients.
- snnTorch ``Leaky`` (``beta = 1 - 1/tau``, ``reset_mechanism="zero"``): it integrates
  ``U = beta U + I`` without scaling the input by ``1/tau``; running it on the same input
  with the threshold multiplied by ``tau`` gives ``U = tau * H``, i.e. the same spikes
  (up to float rounding near the threshold). It fires on ``U > theta`` (strict) and
  always detaches the reset; its Sigmoid surrogate with slope ``4 / tau`` on ``U`` is
  spikeflow's Sigmoid(alpha=4) on ``H``, so its input gradient equals spikeflow's with
  ``strict_firing=True, detach_reset=True`` (checked).
- norse ``LIFBoxCell`` (``dt = 1``, ``tau_mem_inv = 1/tau``, ``v_leak = v_reset``): the
  same Euler step ``v + (x - v)/tau``; strict firing; gradient through the reset; its
  SuperSpike backward is ``g / (|x| + 1)^2`` whatever its ``alpha``, i.e. spikeflow's
  ``SuperSpike(alpha=1)`` (checked).

With ``compile_runners`` every runner also runs under ``torch.compile`` (named
``... compiled``): the fastest path PyTorch offers each library's Python code.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = [
    "LIFParams",
    "Runner",
    "add_common_args",
    "best_spikeflow",
    "build_runners",
    "check_correctness",
    "describe_machine",
    "fmt_ms",
    "fmt_ratio",
    "measure",
    "print_table",
    "setup_torch",
    "spikeflow_auto_backend",
    "sync",
]

PEERS = ("spikingjelly", "snntorch", "norse")


# -- machine and torch setup ----------------------------------------------------------


def setup_torch(threads: int | None, seed: int = 0) -> None:
    """Apply ``--threads`` (None: keep torch's default) and seed the generators."""
    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)


def start(threads: int | None, device: str) -> tuple[torch.device, list[str]]:
    """A benchmark's first step: apply ``--threads``, seed, print the machine's
    description and return the device and that description (for the JSON report)."""
    setup_torch(threads)
    where = torch.device(device)
    machine = describe_machine(where)
    for line in machine:
        print(line)
    return where, machine


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def describe_machine(device: torch.device) -> list[str]:
    """Lines describing the machine, the thread count and the library versions."""
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lines = [
        f"machine: {platform.machine()}, {nproc} usable CPU cores (os.cpu_count()="
        f"{os.cpu_count()}), CPU: {_cpu_model()}",
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"torch threads {torch.get_num_threads()} (intra-op), "
        f"{torch.get_num_interop_threads()} (inter-op)",
        f"device: {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
    ]
    versions = [f"spikeflow {_version('spikeflow') or '?'}"]
    versions += [f"{name} {_version(name) or 'not installed'}" for name in PEERS]
    lines.append("versions: " + ", ".join(versions))
    if hasattr(os, "getloadavg"):
        load = os.getloadavg()[0]
        line = f"load average (1 min) at start: {load:.2f}"
        if nproc and load > 0.5 * nproc:
            line += "  WARNING: the machine is busy, timings will be noisy"
        lines.append(line)
    return lines


# -- timing ---------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    """Wait for queued kernels on ``device`` (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    fn: Callable[[], object],
    device: torch.device,
    *,
    warmup: int = 1,
    repeats: int = 5,
    min_repeats: int = 3,
    budget_s: float | None = None,
) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``fn`` after ``warmup`` calls.

    With ``budget_s``, stops early once ``min_repeats`` calls have run and the timed
    calls together took longer than ``budget_s`` (large sizes get fewer repeats).
    """
    gc.collect()
    for _ in range(warmup):
        fn()
    sync(device)
    times: list[float] = []
    # Back-to-back calls with the cyclic GC off (as timeit does): a collection between
    # calls would also let the OpenMP workers fall asleep, adding their wake-up to
    # every small call. Tensors are still freed by reference counting.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            sync(device)
            times.append(time.perf_counter() - start)
            if budget_s is not None and len(times) >= min_repeats and sum(times) > budget_s:
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    return times


def median(times: Sequence[float]) -> float:
    return statistics.median(times)


def fmt_ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    ms = seconds * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def fmt_ratio(num: float | None, den: float | None) -> str:
    if num is None or den is None or not den > 0:
        return "-"
    r = num / den
    return f"{r:.2f}x" if r < 10 else f"{r:.1f}x" if r < 100 else f"{r:.0f}x"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "") -> None:
    """Print a plain-text table: first column left-aligned, the others right-aligned."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        parts = [
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths))
        ]
        return indent + "  ".join(parts).rstrip()

    print(line(headers))
    print(indent + "  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))


def add_common_args(ap: argparse.ArgumentParser, repeats: int, budget: float) -> None:
    """The flags both scripts share."""
    ap.add_argument("--modes", nargs="+", choices=["fwd", "fwdbwd"], default=["fwd", "fwdbwd"])
    ap.add_argument("--repeats", type=int, default=repeats, help="timed calls after warmup")
    ap.add_argument("--warmup", type=int, default=1, help="untimed calls first")
    ap.add_argument(
        "--budget",
        type=float,
        default=budget,
        help="seconds per runner and size after which repeats stop (at least 3 run)",
    )
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads(N)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--libs",
        nargs="+",
        default=["spikeflow", *PEERS],
        choices=["spikeflow", *PEERS],
        help="libraries to run (default: all)",
    )
    ap.add_argument(
        "--peer-loop",
        choices=["unbind", "index"],
        default="unbind",
        help="how snnTorch/norse loops walk time: x.unbind(0) (default) or x[t]",
    )
    ap.add_argument(
        "--compile",
        action="store_true",
        help="also time every runner under torch.compile (each size and mode compiles "
        "once, 10-60 s per runner; the first call is timed and printed separately)",
    )
    ap.add_argument("--no-check", action="store_true", help="skip the correctness check")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")


# -- one LIF per library --------------------------------------------------------------


@dataclass(frozen=True)
class LIFParams:
    """The LIF every library runs: spikeflow's ``LIFNode`` arguments."""

    tau: float = 2.0
    decay_input: bool = True
    v_threshold: float = 1.0
    v_reset: float | None = 0.0
    detach_reset: bool = False

    def spikeflow_kwargs(self) -> dict[str, object]:
        return {
            "tau": self.tau,
            "decay_input": self.decay_input,
            "v_threshold": self.v_threshold,
            "v_reset": self.v_reset,
            "detach_reset": self.detach_reset,
        }


@dataclass
class Runner:
    """One library's LIF: ``fn(x [T, ...]) -> spikes [T, ...]`` from a fresh state.

    ``ref_kwargs``: extra spikeflow ``LIFNode`` arguments under which spikeflow's
    reference computes the same spikes (e.g. ``strict_firing=True``); ``same_grad``:
    whether the input gradient should match spikeflow's reference too.
    """

    name: str
    fn: Callable[[Tensor], Tensor]
    library: str
    note: str = ""
    ref_kwargs: dict[str, object] = field(default_factory=dict)
    same_grad: bool = False
    #: Runs under torch.compile: its first call on a new shape or mode compiles.
    compiled: bool = False

    @property
    def is_spikeflow(self) -> bool:
        return self.library == "spikeflow"


def _spikeflow_runners(p: LIFParams, device: torch.device) -> list[Runner]:
    from spikeflow.kernels import BACKENDS
    from spikeflow.neurons import LIFNode

    runners = []
    for backend in BACKENDS:
        if backend == "triton" and device.type != "cuda":
            continue  # a GPU backend (its CPU interpreter is for tests, not timing)
        if backend == "cpu" and device.type != "cpu":
            continue  # the C kernels take CPU tensors only
        node = LIFNode(**p.spikeflow_kwargs(), backend=backend).to(device)
        runners.append(
            Runner(
                f"spikeflow[{backend}]",
                node,
                "spikeflow",
                note="reference loop" if backend == "torch" else "",
                same_grad=True,
            )
        )
    return runners


def spikeflow_auto_backend(x: Tensor) -> str:
    """The name of the backend that ``backend="auto"`` picks for ``x``."""
    from spikeflow.kernels import BACKENDS, resolve_backend

    run = resolve_backend("auto", x)
    run = getattr(run, "fused", run)  # auto's wrapper around a fused backend
    for name, fn in BACKENDS.items():
        if fn is run:
            return name
    return getattr(run, "__name__", "?")


def _spikingjelly_runner(p: LIFParams, device: torch.device, loop: str) -> Runner:
    del loop  # spikingjelly's multi-step LIFNode takes the whole sequence
    # torch warns at import that triton is missing (irrelevant on CPU).
    logging.getLogger("torch._library.triton").setLevel(logging.ERROR)
    import inspect

    from spikingjelly.activation_based import neuron, surrogate

    kwargs: dict[str, object] = {
        "tau": float(p.tau),
        "decay_input": p.decay_input,
        "v_threshold": float(p.v_threshold),
        "v_reset": p.v_reset,
        "surrogate_function": surrogate.Sigmoid(alpha=4.0),
        "detach_reset": p.detach_reset,
        "step_mode": "m",
    }
    accepts = inspect.signature(neuron.LIFNode.__init__).parameters
    if "backend" in accepts:
        # spikingjelly <= 0.0.0.0.14: 'torch' is the only backend for CPU tensors
        # ('cupy' and 'triton' need CUDA).
        kwargs["backend"] = "torch" if device.type == "cpu" else "cupy"
        variant = kwargs["backend"]
    else:
        # spikingjelly 2.x has no backend argument: LIFNode calls the registered
        # torch.ops.sj_lif op; on CPU that is its Python step loop, differentiated by
        # autograd (its hand-written CPU backward is registered but not used in eager
        # mode); on CUDA the native or Triton kernel that its selection picks (the
        # native one only when built with SJ_BUILD_NATIVE_CUDA=1).
        variant = "sj_lif op"
        if device.type == "cuda":
            try:
                from spikingjelly._ops import lif as sj_lif

                chosen = sj_lif._selection.diagnostics(device)["implementation"]
                variant = f"sj_lif op, {chosen}"
            except Exception:  # an older or newer layout: keep the generic name
                pass
    node = neuron.LIFNode(**kwargs).to(device)

    def run(x: Tensor) -> Tensor:
        node.reset()
        return node(x)

    return Runner(
        f"spikingjelly[{variant}]",
        run,
        "spikingjelly",
        note="same equations, surrogate and reset",
        same_grad=True,
    )


def _snntorch_runner(p: LIFParams, device: torch.device, loop: str) -> Runner:
    import snntorch
    from snntorch import surrogate

    if p.v_reset not in (0.0, None):
        raise ValueError(f"snnTorch resets to zero or by subtraction, not to {p.v_reset}")
    if p.v_reset is None:
        # snnTorch subtracts theta after the decay, spikeflow before it (either decay_input).
        note_reset = "subtract (not decayed: differs from spikeflow's soft reset)"
    else:
        note_reset = "zero"
    # U = beta U + I with I = x equals tau * H of spikeflow's decay_input=True equation,
    # so the threshold is scaled by tau instead of scaling the input (no extra op).
    scale = p.tau if p.decay_input else 1.0
    note_threshold = "theta*tau" if p.decay_input else "theta"
    # init_hidden=True: the idiom of snnTorch's tutorials, and 7-12% faster here than
    # passing the membrane explicitly (same spikes).
    lif = snntorch.Leaky(
        beta=1.0 - 1.0 / p.tau,
        threshold=p.v_threshold * scale,
        spike_grad=surrogate.sigmoid(slope=4.0 / scale),
        reset_mechanism="zero" if p.v_reset == 0.0 else "subtract",
        init_hidden=True,
    ).to(device)

    def run(x: Tensor) -> Tensor:
        lif.mem = torch.zeros(0, device=x.device)  # a fresh state (broadcast on first use)
        return torch.stack([lif(xt) for xt in _steps(x, loop)])

    return Runner(
        f"snntorch[Leaky {loop} loop]",
        run,
        "snntorch",
        note=f"{note_threshold}, strict firing, reset {note_reset}, reset detached",
        ref_kwargs={"strict_firing": True, "detach_reset": True},
        same_grad=True,
    )


def _norse_runner(p: LIFParams, device: torch.device, loop: str) -> Runner:
    from norse.torch import LIFBoxCell, LIFBoxParameters
    from norse.torch.functional.reset import reset_subtract, reset_value

    if not p.decay_input:
        raise ValueError("norse's LIFBox always divides the input by tau (decay_input=True)")
    if p.detach_reset:
        raise ValueError("norse's reset always passes the gradient (no detach_reset=True)")
    v_rest = 0.0 if p.v_reset is None else p.v_reset
    params = LIFBoxParameters(
        tau_mem_inv=torch.as_tensor(1.0 / p.tau, device=device),
        v_leak=torch.as_tensor(v_rest, device=device),
        v_th=torch.as_tensor(p.v_threshold, device=device),
        v_reset=torch.as_tensor(v_rest, device=device),
        method="super",  # g / (|x| + 1)^2: norse's SuperSpike backward has no alpha
        reset_method=reset_value if p.v_reset is not None else reset_subtract,
    )
    cell = LIFBoxCell(params, dt=1.0).to(device)

    def run(x: Tensor) -> Tensor:
        state = None
        spikes = []
        for xt in _steps(x, loop):
            z, state = cell(xt, state)
            spikes.append(z)
        return torch.stack(spikes)

    from spikeflow.surrogate import SuperSpike

    return Runner(
        f"norse[LIFBoxCell {loop} loop]",
        run,
        "norse",
        note="dt=1, tau_mem_inv=1/tau; strict firing, SuperSpike surrogate (alpha 1)",
        ref_kwargs={"strict_firing": True, "surrogate_function": SuperSpike(alpha=1.0)},
        same_grad=True,
    )


def _steps(x: Tensor, loop: str) -> Sequence[Tensor]:
    """The time steps of ``x`` for a Python loop.

    ``"unbind"`` (default): ``x.unbind(0)``, whose backward stacks the step gradients
    once. ``"index"``: ``x[t]`` for each t, the tutorial idiom; when ``x`` needs a
    gradient, each step's backward materialises a zero tensor the size of all of ``x``,
    so the backward costs O(T^2 N) (at T = 500 that dominates everything).
    """
    if loop == "unbind":
        return x.unbind(0)
    if loop == "index":
        return [x[t] for t in range(x.shape[0])]
    raise ValueError(f"loop must be 'unbind' or 'index', got {loop!r}")


_PEER_BUILDERS = {
    "spikingjelly": _spikingjelly_runner,
    "snntorch": _snntorch_runner,
    "norse": _norse_runner,
}


def build_runners(
    p: LIFParams,
    device: torch.device,
    libraries: Sequence[str] | None = None,
    loop: str = "unbind",
    compile_runners: bool = False,
) -> tuple[list[Runner], dict[str, str]]:
    """Every available library's LIF, spikeflow's backends first.

    ``loop``: how the step-wise peers (snnTorch, norse) walk the time axis, see
    :func:`_steps`. ``compile_runners``: add each runner under ``torch.compile`` too.
    Returns the runners and ``{library: reason}`` for the peers that could not be built.
    """
    wanted = list(libraries) if libraries is not None else ["spikeflow", *PEERS]
    runners: list[Runner] = []
    unavailable: dict[str, str] = {}
    if "spikeflow" in wanted:
        runners += _spikeflow_runners(p, device)
    for name in PEERS:
        if name not in wanted:
            continue
        try:
            runners.append(_PEER_BUILDERS[name](p, device, loop))
        except Exception as error:  # a peer that fails to import or build is skipped
            unavailable[name] = f"{type(error).__name__}: {error}".splitlines()[0][:200]
    if compile_runners:
        runners += [_compiled(r) for r in runners]
    return runners, unavailable


def _compiled(r: Runner) -> Runner:
    """``r`` under ``torch.compile`` (inductor, static shapes: each size and mode compiles
    once, on its first call, which the scripts time separately)."""
    import torch._dynamo

    # Every size and mode is a recompilation of the same function: past the default
    # limit (8) dynamo would fall back to eager silently.
    torch._dynamo.config.recompile_limit = 1024
    torch._dynamo.config.accumulated_recompile_limit = 4096
    return Runner(
        f"{r.name} compiled",
        torch.compile(r.fn, dynamic=False),
        r.library,
        note=f"torch.compile of the above{'; ' + r.note if r.note else ''}",
        ref_kwargs=r.ref_kwargs,
        same_grad=r.same_grad,
        compiled=True,
    )


def first_call_s(call: Callable[[], object], device: torch.device) -> float:
    """Seconds of one call of ``call`` (a compiled runner's first call compiles)."""
    sync(device)
    start = time.perf_counter()
    call()
    sync(device)
    return time.perf_counter() - start


# -- correctness ----------------------------------------------------------------------


def check_correctness(
    runners: Sequence[Runner], p: LIFParams, x: Tensor, label: str
) -> dict[str, str]:
    """Compare every runner's spikes (and gradients where they should match) with
    spikeflow's reference loop on ``x``; print a table and return ``{name: status}``.

    ``status`` is "ok", "MISMATCH" (semantics should match but the spikes differ) or
    "error: ...".
    """
    from spikeflow.neurons import LIFNode

    def reference(extra: dict[str, object]) -> tuple[Tensor, Tensor]:
        node = LIFNode(**{**p.spikeflow_kwargs(), **extra}, backend="torch").to(x.device)
        xr = x.detach().clone().requires_grad_(True)
        s = node(xr)
        s.sum().backward()
        return s.detach(), xr.grad

    plain_s, plain_g = reference({})
    print(
        f"correctness check ({label}): input {tuple(x.shape)}, reference firing rate "
        f"{plain_s.mean().item():.3f}"
    )
    refs: dict[tuple, tuple[Tensor, Tensor]] = {(): (plain_s, plain_g)}
    rows = []
    status: dict[str, str] = {}
    for r in runners:
        key = tuple(sorted(r.ref_kwargs.items()))
        if key not in refs:
            refs[key] = reference(r.ref_kwargs)
        ref_s, ref_g = refs[key]
        try:
            xr = x.detach().clone().requires_grad_(True)
            s = r.fn(xr)
            s.sum().backward()
            s = s.detach().to(ref_s.dtype)
        except Exception as error:
            status[r.name] = f"error: {type(error).__name__}: {error}".splitlines()[0][:160]
            rows.append([r.name, "-", "-", "-", "-", status[r.name]])
            continue
        mism = int((s != ref_s).sum())
        mism_plain = int((s != plain_s).sum())
        grad = "-"
        ok = mism == 0
        if r.same_grad and xr.grad is not None:
            diff = float((xr.grad - ref_g).abs().max())
            scale = float(ref_g.abs().max()) or 1.0
            grad = f"{diff:.1e}"
            ok = ok and diff <= 1e-4 * scale
        elif r.same_grad:
            grad = "no grad"
            ok = False
        status[r.name] = "ok" if ok else "MISMATCH"
        ref_desc = ", ".join(f"{k}={v}" for k, v in r.ref_kwargs.items()) or "as is"
        rows.append([r.name, ref_desc, str(mism), str(mism_plain), grad, status[r.name]])
    print_table(
        [
            "runner",
            "spikeflow ref config",
            "spike mismatches",
            "vs default ref",
            "max |dgrad|",
            "status",
        ],
        rows,
        indent="  ",
    )
    print(f"  ({x.numel()} spikes compared per runner; gradients only where they should match)")
    return status


def best_spikeflow(
    runners: Sequence[Runner], times: dict[str, float | None]
) -> tuple[str, float | None]:
    """(name, time) of the fastest spikeflow runner that ran, or ("spikeflow", None)."""
    timed = [(r.name, times.get(r.name)) for r in runners if r.is_spikeflow]
    timed = [(n, t) for n, t in timed if t is not None]
    if not timed:
        return ("spikeflow", None)
    return min(timed, key=lambda item: item[1])


# -- the fused kernels alone ----------------------------------------------------------


class _Recorder:
    """Stands in for an entry's kernels: runs them and keeps each call's arguments."""

    def __init__(self, kernels: object) -> None:
        self.kernels = kernels
        self.calls: list[tuple[str, tuple]] = []

    def forward(self, *args: object) -> None:
        self.calls.append(("forward", args))
        self.kernels.forward(*args)

    def backward(self, *args: object) -> None:
        self.calls.append(("backward", args))
        self.kernels.backward(*args)


def kernel_time(
    call: Callable[[], object], device: torch.device, repeats: int, budget_s: float
) -> float | None:
    """Median seconds of the fused kernel calls that one ``call()`` makes, replayed on
    the buffers that call used: already allocated and touched, so without autograd,
    Python glue and first-touch page faults. None when ``call`` ran no fused kernel.

    It swaps every registered kernel pair for a recorder around one ``call()`` (the
    registry is spikeflow's internal ``spikeflow.kernels.registry._ENTRIES``).
    """
    import dataclasses

    from spikeflow.kernels import registry

    saved = dict(registry._ENTRIES)
    recorders: list[_Recorder] = []
    for key, entry in saved.items():
        recorders.append(_Recorder(entry.kernels))
        registry._ENTRIES[key] = dataclasses.replace(entry, kernels=recorders[-1])
    try:
        call()
    finally:
        registry._ENTRIES.update(saved)
    replay = [(getattr(r.kernels, name), args) for r in recorders for name, args in r.calls]
    if not replay:
        return None

    def run() -> None:
        for fn, args in replay:
            fn(*args)

    return median(measure(run, device, warmup=2, repeats=repeats, budget_s=budget_s))
