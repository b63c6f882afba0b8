"""DH-LIF forward+backward: the branch filter's torch loop ("before") vs its C kernel.

Each case runs forward and backward (the sum of the output) on one thread; the cases are
interleaved, repeat after repeat, and the median and minimum are printed (ms). "before"
is the same neuron with ``node.dendrites.backend = "torch"`` (the per-step loop of
torch ops the filter ran before its kernel); the soma is the fused declared neuron in
both. TC-LIF (its fused kernel) is the two-compartment neighbour, for scale.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_dh_lif.py
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from spikeflow.layers import DendriticRecurrent
from spikeflow.neurons import DHLIFNode, TCLIFNode


def _cases(t: int, b: int, n: int, k: int) -> dict[str, Callable[[], None]]:
    torch.manual_seed(0)
    x = torch.rand(t, b, n, k, requires_grad=True)
    x_in = torch.rand(t, b, n, requires_grad=True)

    def node(filter_backend: str) -> Callable[[], None]:
        torch.manual_seed(1)
        neuron = DHLIFNode(k, n)
        neuron.dendrites.backend = filter_backend

        def run() -> None:
            neuron(x).sum().backward()

        return run

    def recurrent(filter_backend: str) -> Callable[[], None]:
        torch.manual_seed(1)
        neuron = DHLIFNode(k, n, step_mode="s")
        neuron.dendrites.backend = filter_backend
        layer = DendriticRecurrent(neuron, n, n, k)

        def run() -> None:
            layer(x_in).sum().backward()

        return run

    tc = TCLIFNode()

    def tc_lif() -> None:
        tc(x_in).sum().backward()

    return {
        "DHLIFNode, filter torch loop (before)": node("torch"),
        "DHLIFNode, filter C kernel (after)": node("auto"),
        "DH-SRNN layer, filter torch (before)": recurrent("torch"),
        "DH-SRNN layer, filter C (after)": recurrent("auto"),
        "TCLIFNode (fused), [T, B, N]": tc_lif,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-T", type=int, default=64)
    parser.add_argument("-B", type=int, default=32)
    parser.add_argument("-N", type=int, default=88)
    parser.add_argument("-K", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cases = _cases(args.T, args.B, args.N, args.K)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for run in cases.values():  # warm-up: the kernels' build and first calls
        run()
        run()
    for _ in range(args.repeats):
        for name, run in cases.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    print(f"T={args.T} B={args.B} N={args.N} K={args.K}, one thread, {args.repeats} repeats")
    for name, values in times.items():
        median, least = statistics.median(values) * 1e3, min(values) * 1e3
        print(f"{name:40s} median {median:8.2f} ms   min {least:8.2f} ms")


if __name__ == "__main__":
    main()
