"""Single-step (streaming) LIF: the cost of one time step per call, vs the peers.

Online inference and step-by-step simulation call a neuron once per time step on a
``[B, N]`` tensor; at small sizes that cost is mostly per-call overhead. Each runner
steps the same LIF (tau 2, hard reset to 0, threshold 1, Sigmoid(4) surrogate) through
``--steps`` steps of ``[B, N]`` input under ``no_grad``, carrying its state, and the
table prints the median microseconds per step and the ratio to spikeflow's
``backend="auto"``:

- ``spikeflow[auto|cpu|torch]``: ``LIFNode(step_mode="s")`` with streaming on;
- ``spikingjelly``: ``neuron.LIFNode(step_mode="s")``;
- ``snntorch``: ``snn.Leaky(beta=1-1/tau, threshold=tau)`` (``U = tau * H``, the same
  spikes up to strict firing; see ``_common.py``).

    python benchmarks/bench_single_step.py                       # ~10 s
    python benchmarks/bench_single_step.py --B 32 --N 1000 100000
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import _common as C
import torch

from spikeflow import functional as F
from spikeflow.neurons import LIFNode

TAU = 2.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--B", type=int, default=32, help="batch")
    ap.add_argument("--N", type=int, nargs="+", default=[1000, 10000], help="neurons per sample")
    ap.add_argument("--steps", type=int, default=100, help="time steps per timed call")
    ap.add_argument("--repeats", type=int, default=21, help="timed calls after one warmup")
    ap.add_argument("--threads", type=int, default=None)
    return ap.parse_args(argv)


def _spikeflow(backend: str) -> Callable[[list[torch.Tensor]], None]:
    node = LIFNode(tau=TAU, step_mode="s", backend=backend)

    def run(xs: list[torch.Tensor]) -> None:
        with F.streaming(node):
            for x in xs:
                node(x)

    return run


def _spikingjelly() -> Callable[[list[torch.Tensor]], None]:
    from spikingjelly.activation_based import neuron, surrogate

    node = neuron.LIFNode(tau=TAU, step_mode="s", surrogate_function=surrogate.Sigmoid(alpha=4.0))

    def run(xs: list[torch.Tensor]) -> None:
        node.reset()
        for x in xs:
            node(x)

    return run


def _snntorch() -> Callable[[list[torch.Tensor]], None]:
    import snntorch
    from snntorch import surrogate

    leaky = snntorch.Leaky(beta=1 - 1 / TAU, threshold=TAU, reset_mechanism="zero",
                           spike_grad=surrogate.sigmoid(slope=4.0 / TAU))  # fmt: skip

    def run(xs: list[torch.Tensor]) -> None:
        mem = leaky.reset_mem()
        for x in xs:
            _, mem = leaky(x, mem)

    return run


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    cpu, _ = C.start(args.threads, "cpu")
    builders: dict[str, Callable[[], Callable[[list[torch.Tensor]], None]]] = {
        "spikeflow[auto]": lambda: _spikeflow("auto"),
        "spikeflow[cpu]": lambda: _spikeflow("cpu"),
        "spikeflow[torch]": lambda: _spikeflow("torch"),
        "spikingjelly": _spikingjelly,
        "snntorch": _snntorch,
    }
    runners: dict[str, Callable[[list[torch.Tensor]], None]] = {}
    for name, build in builders.items():
        try:
            runners[name] = build()
        except ImportError as exc:
            print(f"{name}: unavailable: {exc}")
    for n in args.N:
        xs = [torch.rand(args.B, n) * 2.5 for _ in range(args.steps)]
        per_step: dict[str, float] = {}
        with torch.no_grad():
            for name, run in runners.items():
                times = C.measure(lambda r=run, xs=xs: r(xs), cpu, repeats=args.repeats)
                per_step[name] = C.median(times) / args.steps
        base = per_step["spikeflow[auto]"]
        print(f"\n[B={args.B}, N={n}] one step per call, {args.steps} steps, no_grad")
        rows = [[name, f"{t * 1e6:.1f}", C.fmt_ratio(t, base)] for name, t in per_step.items()]
        C.print_table(["runner", "µs / step", "vs spikeflow[auto]"], rows, indent="  ")


if __name__ == "__main__":
    main()
