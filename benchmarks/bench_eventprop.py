"""EventProp (the adjoint method, ``spikeflow.learn.EventPropLIF``): the fused C kernels
vs the PyTorch loop, with BPTT and Norse's adjoint beside them.

One SHD-like layer, ``700 -> 256`` current-based LIF neurons (Norse's parameters,
``dt = 1e-3``) and a ``256 -> 20`` readout of the spikes at every step, on binary input
spikes (rate 2%); timed: forward + ``(readout(z) * c).sum().backward()`` into the
weights (``zero_grad`` before each call). Runners, each on the same input and weights:

- ``eventprop c``: ``EventPropLIF(700, 256, backend="c")``, the fused C kernels;
- ``eventprop torch``: the same layer's PyTorch loop (``backend="torch"``, the reference);
- ``bptt fused``: for context, the same neuron trained by BPTT with a surrogate
  gradient: ``Linear(700, 256)`` and spikeflow's ``CubaLIFNode`` (the same dynamics:
  ``parameters_from_cuba``) on its fused C kernel (``backend="cpu"``; recurrent:
  not run, the fused kernel has no recurrent weights);
- ``matmul floor``: the same matmuls without a neuron (the currents ``W_in x`` go to the
  readout): what every runner pays besides its neuron;
- ``neuron alone c`` / ``torch`` (feed-forward only): ``lif_adjoint`` on the layer's
  currents, backward into them: the adjoint's own loops without the matmuls;
- ``norse adjoint``: Norse 1.1's ``LIF(p=LIFParameters(method="adjoint"))`` where it
  runs; in Norse 1.1 it raises (its adjoint step hands ``method="adjoint"`` on to the
  threshold function, which has no such method), so the runner calls the adjoint step
  functions that module would call (``lif_feed_forward_adjoint_step``, recurrent
  ``lif_adjoint_step``) over the sequence with ``method="super"`` parameters, as
  ``tests/test_eventprop.py`` does: Norse's adjoint, not the module's loop overhead.

Before timing, the script checks that the C kernels and the loop give identical spikes
and gradients within 1e-4 of the largest (float32), and that Norse's spikes equal spikeflow's
(``jumps="norse"`` is Norse's adjoint; the default jumps are timed).

    python benchmarks/bench_eventprop.py                       # ~5 min on 2 loaded cores
    python benchmarks/bench_eventprop.py --T 100 --batch 32 --recurrent
    python benchmarks/bench_eventprop.py --threads 1 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import torch
from _common import measure
from _common import start as start_benchmark
from torch import Tensor, nn

from spikeflow.learn import EventPropLIF, lif_adjoint
from spikeflow.learn.eventprop import NORSE_DEFAULTS

IN, HIDDEN, OUT = 700, 256, 20


def _norse_adjoint(layer: EventPropLIF) -> Callable[[Tensor], Tensor] | str:
    """Norse's adjoint over ``[T, B, 700]`` with ``layer``'s weights, or why not."""
    try:
        import norse.torch as norse
        from norse.torch.functional.adjoint.lif_adjoint import (
            lif_adjoint_step,
            lif_feed_forward_adjoint_step,
        )
        from norse.torch.functional.lif import LIFFeedForwardState, LIFParameters, LIFState
    except Exception as error:  # any import failure: report it
        return f"unavailable: {type(error).__name__}: {error}"
    p = layer.p
    values = {k: torch.tensor(getattr(p, k)) for k in p._fields if k != "dt"}
    try:
        module = norse.LIF(p=LIFParameters(**values, method="adjoint"), dt=p.dt)
        module(torch.rand(2, 1, 3))
        note = "norse.LIF(method='adjoint')"
    except Exception as error:  # Norse 1.1 raises here
        module = None
        note = f"LIF(method='adjoint') raises {type(error).__name__}; its step functions"
    pn = LIFParameters(**values, method="super")
    w_in, w_rec = layer.input_weights, layer.recurrent_weights

    def run(x: Tensor) -> Tensor:
        zeros = x.new_zeros(x.shape[1], HIDDEN)
        zs = []
        if w_rec is None:
            current = torch.matmul(x, w_in.t())
            state = LIFFeedForwardState(zeros + p.v_leak, zeros)
            for c in current:
                z, state = lif_feed_forward_adjoint_step(c, state, p=pn, dt=p.dt)
                zs.append(z)
        else:
            state = LIFState(zeros, zeros + p.v_leak, zeros)
            for x_t in x:
                z, state = lif_adjoint_step(x_t, state, w_in, w_rec, p=pn, dt=p.dt)
                zs.append(z)
        return torch.stack(zs)

    run.note = note  # type: ignore[attr-defined]
    return run


def _bptt_fused(layer: EventPropLIF) -> Callable[[Tensor], Tensor]:
    from spikeflow.neurons import CubaLIFNode

    p = layer.p
    node = CubaLIFNode(
        tau_syn=1.0 / p.tau_syn_inv, tau_mem=1.0 / p.tau_mem_inv, r="tau_syn", v_leak=p.v_leak,
        dt=p.dt, v_reset=p.v_reset, v_threshold=p.v_th, strict_firing=True, step_mode="m",
        backend="cpu",
    )  # fmt: skip
    linear = nn.Linear(IN, HIDDEN, bias=False)
    linear.weight = layer.input_weights

    def run(x: Tensor) -> Tensor:
        return node(linear(x))

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", type=int, nargs="+", default=[100, 500])
    ap.add_argument("--batch", type=int, nargs="+", default=[32, 256])
    ap.add_argument("--recurrent", action="store_true", help="also time recurrent layers")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per runner and size")
    ap.add_argument("--budget", type=float, default=20.0, help="seconds per runner and size")
    ap.add_argument("--rate", type=float, default=0.02, help="input spike rate")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    device, _ = start_benchmark(args.threads, "cpu")
    gen = torch.Generator().manual_seed(0)
    rows = []
    for recurrent in (False, True) if args.recurrent else (False,):
        for steps in args.T:
            for batch in args.batch:
                rows.append(_one_size(steps, batch, recurrent, args, gen, device))
    print("\nsummary: median ms of forward+backward (ratio: time / eventprop c); the")
    print("neuron's part (time - matmul floor) of eventprop c and eventprop torch, and")
    print("the neuron alone (lif_adjoint on the currents) by the C kernels and the loop")
    names = ("eventprop torch", "bptt fused", "norse adjoint", "matmul floor")
    print(f"  {'layer':<10} {'T':>4} {'B':>4} {'rate':>5} {'eventprop c':>12} "
          + " ".join(f"{name:>16}" for name in names)
          + f" {'neuron c':>9} {'neuron torch':>13}"
          + f" {'alone c':>8} {'alone torch':>12}")  # fmt: skip
    for kind, steps, batch, rate, ms in rows:
        base, floor = ms["eventprop c"], ms["matmul floor"]
        cells = [
            "-" if ms.get(name) is None else f"{ms[name]:.0f} ({ms[name] / base:.2f}x)"
            for name in names
        ]
        assert base is not None and floor is not None
        own_c, own_torch = base - floor, ms["eventprop torch"] - floor  # type: ignore[operator]
        alone = [ms.get(f"neuron alone {b}") for b in ("c", "torch")]
        alone_cells = ["-" if a is None else f"{a:.0f}" for a in alone]
        print(f"  {kind:<10} {steps:>4} {batch:>4} {rate:>5.3f} {base:>12.0f} "
              + " ".join(f"{cell:>16}" for cell in cells)
              + f" {own_c:>9.0f} {own_torch:>13.0f}"
              + f" {alone_cells[0]:>8} {alone_cells[1]:>12}")  # fmt: skip


def _one_size(
    steps: int,
    batch: int,
    recurrent: bool,
    args: argparse.Namespace,
    gen: torch.Generator,
    device: torch.device,
) -> tuple[str, int, int, float, dict[str, float | None]]:
    """One size: check the runners agree, then time each (median ms, None: not run)."""
    kind = "recurrent" if recurrent else "feed-fwd"
    torch.manual_seed(1)
    layer = EventPropLIF(IN, HIDDEN, recurrent=recurrent, p=NORSE_DEFAULTS, weight_scale=12.0)
    if recurrent:
        with torch.no_grad():
            layer.recurrent_weights.mul_(0.2)
    readout = nn.Linear(HIDDEN, OUT, bias=False)
    x = (torch.rand(steps, batch, IN, generator=gen) < args.rate).float()
    c = torch.randn(steps, batch, OUT, generator=gen)
    params = [*layer.parameters(), *readout.parameters()]

    def step(net: Callable[[Tensor], Tensor]) -> Callable[[], Tensor]:
        def call() -> Tensor:
            for q in params:
                q.grad = None
            z = net(x)
            (readout(z) * c).sum().backward()
            return z

        return call

    runners: dict[str, Callable[[], Tensor] | str] = {}
    runners["eventprop c"] = step(lambda x_: _with_backend(layer, "c", x_))
    runners["eventprop torch"] = step(lambda x_: _with_backend(layer, "torch", x_))
    runners["bptt fused"] = "not run: no recurrent weights" if recurrent else step(
        _bptt_fused(layer)
    )  # fmt: skip
    # the same matmuls without a neuron: the currents W_in x go to the readout
    runners["matmul floor"] = step(lambda x_: torch.matmul(x_, layer.input_weights.t()))
    norse_run = _norse_adjoint(layer)
    runners["norse adjoint"] = norse_run if isinstance(norse_run, str) else step(norse_run)

    # correctness: C vs the loop, Norse's spikes vs spikeflow's
    grads = {}
    for name in ("eventprop c", "eventprop torch"):
        z = runners[name]()  # type: ignore[operator]
        grads[name] = (z, *(q.grad.clone() for q in params))
    got, want = grads["eventprop c"], grads["eventprop torch"]
    rate = float(want[0].detach().mean())
    if torch.equal(got[0], want[0]):
        for a, b in zip(got[1:], want[1:]):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()) + 1e-6)
        agree = "C and loop agree"
    elif recurrent:  # W_rec z summed in another order: a membrane within rounding of v_th
        differ = (got[0] != want[0]).any(dim=2)  # [T, B]
        first = int(differ.any(dim=1).nonzero()[0])
        agree = (f"C and loop: the spikes of {int(differ.any(dim=0).sum())} of {batch} "
                 f"samples differ, from step {first} on (float32 rounding of W_rec z)")  # fmt: skip
    else:
        raise SystemExit("the C kernels' spikes differ from the loop's")
    if not isinstance(norse_run, str):
        with torch.no_grad():
            assert torch.equal(norse_run(x), want[0]), "Norse's spikes differ from the loop's"
    print(f"\n{kind} 700->256->20, T={steps}, batch {batch}: hidden spike rate {rate:.3f}; "
          + agree + ("" if isinstance(norse_run, str) else "; Norse's spikes equal the loop's")
          + (f" ({norse_run.note})" if not isinstance(norse_run, str) else ""))  # fmt: skip

    # the neuron alone: lif_adjoint on the layer's currents, backward into them
    current = torch.matmul(x, layer.input_weights.t()).detach().requires_grad_()
    gz = torch.randn(current.shape, generator=gen)
    if not recurrent:
        for backend in ("c", "torch"):

            def alone(b: str = backend) -> None:
                current.grad = None
                z, _ = lif_adjoint(current, layer.p, backend=b)
                (z * gz).sum().backward()

            runners[f"neuron alone {backend}"] = alone  # type: ignore[assignment]

    ms: dict[str, float | None] = {}
    for name, run in runners.items():
        if isinstance(run, str):
            print(f"  {name:<16} {run}")
            ms[name] = None
            continue
        times = measure(run, device, repeats=args.repeats, budget_s=args.budget)
        ms[name] = 1e3 * statistics.median(times)
        print(f"  {name:<16} {ms[name]:9.1f} ms  (min {1e3 * min(times):.1f}, {len(times)} runs)")
    return kind, steps, batch, rate, ms


def _with_backend(layer: EventPropLIF, backend: str, x: Tensor) -> Tensor:
    layer.backend = backend
    return layer(x)  # type: ignore[return-value]


if __name__ == "__main__":
    main()
