"""Parallel spiking neurons vs the fused sequential LIF: forward+backward time on CPU.

For every (T, N) it times ``neuron(x).sum().backward()`` (gradients into the input and
every parameter) of:

- ``LIF[cpu]``: spikeflow's fused sequential ``LIFNode(backend="cpu")`` (the baseline:
  one C kernel, a loop over T inside, parallel over neurons);
- ``PSN``: ``H = W X + b``, one ``[T, T] x [T, N]`` GEMM;
- ``masked PSN``: the same GEMM with ``W ⊙ M(λ)`` (order k, λ = 1);
- ``sliding PSN gemm`` / ``sliding PSN conv``: k shared weights, Toeplitz GEMM or causal
  conv1d;
- ``no-reset LIF gemm`` / ``no-reset LIF scan``: the LIF without reset by the Toeplitz
  ``Λ`` GEMM or by a log-depth associative scan;
- optionally (``--with-loop``) ``LIF[torch]``, the unfused reference loop.

Input ``[T, N]`` float32 uniform in [0, 2.5). The table prints median ms and the
speed-up of each parallel form over ``LIF[cpu]`` (``2.00x`` = twice as fast; below 1:
slower).

    python benchmarks/bench_parallel.py                  # T 4..128, N 1e4..1e6, ~3 min
    python benchmarks/bench_parallel.py --T 16 64 --N 1e5 --with-loop
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable

import _common as C
import torch
from torch import nn

from spikeflow.neurons import PSN, LIFNode, MaskedPSN, NoResetLIFNode, SlidingPSN


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--T", type=int, nargs="+", default=[4, 8, 16, 32, 64, 128])
    ap.add_argument("--N", type=float, nargs="+", default=[1e4, 1e5, 1e6])
    ap.add_argument("--k", type=int, default=4, help="order of the masked and sliding PSN")
    ap.add_argument(
        "--max-elems", type=float, default=1.3e8, help="skip T*N above this (0: no cap)"
    )
    ap.add_argument("--with-loop", action="store_true", help="also time LIFNode(backend='torch')")
    ap.add_argument("--repeats", type=int, default=5, help="timed calls after warmup")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--budget", type=float, default=0.6, help="seconds per runner and size")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads(N)")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    return ap.parse_args(argv)


def build(T: int, k: int, with_loop: bool) -> dict[str, nn.Module]:
    """The neurons timed at sequence length ``T`` (``k`` capped at ``T``)."""
    k = min(k, T)
    neurons: dict[str, nn.Module] = {"LIF[cpu]": LIFNode(backend="cpu")}
    if with_loop:
        neurons["LIF[torch]"] = LIFNode(backend="torch")
    neurons["PSN"] = PSN(T)
    neurons[f"masked PSN k={k}"] = MaskedPSN(k, T, lambda_init=1.0)
    neurons[f"sliding PSN gemm k={k}"] = SlidingPSN(k)
    neurons[f"sliding PSN conv k={k}"] = SlidingPSN(k, backend="conv")
    neurons["no-reset LIF gemm"] = NoResetLIFNode(method="gemm")
    neurons["no-reset LIF scan"] = NoResetLIFNode(method="scan")
    return neurons


def fwd_bwd(neuron: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    xg = x.clone().requires_grad_(True)

    def call() -> None:
        xg.grad = None
        neuron.zero_grad(set_to_none=True)
        neuron(xg).sum().backward()

    return call


def fmt_n(n: int) -> str:
    exp = len(str(n)) - 1
    return f"1e{exp}" if n == 10**exp else str(n)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device, machine = C.start(args.threads, "cpu")
    print(f"forward+backward, float32, input uniform [0, 2.5), k={args.k}, λ=1 (masked)\n")
    names: list[str] = []
    results: list[dict] = []
    rows: list[list[str]] = []
    for T in args.T:
        for n_float in args.N:
            N = int(n_float)
            if args.max_elems and T * N > args.max_elems:
                print(f"T={T} N={fmt_n(N)}: skipped (T*N > --max-elems {args.max_elems:g})")
                continue
            x = torch.rand(T, N) * 2.5
            neurons = build(T, args.k, args.with_loop)
            names = names or list(neurons)
            times: dict[str, float] = {}
            for name, neuron in neurons.items():
                samples = C.measure(
                    fwd_bwd(neuron, x),
                    device,
                    warmup=args.warmup,
                    repeats=args.repeats,
                    budget_s=args.budget,
                )
                times[name] = C.median(samples)
            base = times["LIF[cpu]"]
            rows.append(
                [
                    f"T={T} N={fmt_n(N)}",
                    C.fmt_ms(base),
                    *[f"{C.fmt_ms(t)} ({C.fmt_ratio(base, t)})" for n, t in times.items()
                      if n != "LIF[cpu]"],
                ]
            )  # fmt: skip
            print(
                f"T={T} N={fmt_n(N)}: "
                + ", ".join(f"{n} {C.fmt_ms(t)} ms" for n, t in times.items())
            )
            results.append({"T": T, "N": N, "times_s": times})
            del x
    print(
        "\nforward+backward median ms; in parentheses the speed-up over LIF[cpu] "
        "(>1: the parallel form is faster)"
    )
    # Column names without their k, which is capped at T (so differs between rows).
    short = [re.sub(r" k=\d+", "", n) for n in names[1:]]
    C.print_table(["size", "LIF[cpu] ms", *short], rows, indent="  ")
    print(f"  k = {args.k}, capped at T where T < {args.k}")
    for result in results:
        result["k"] = min(args.k, result["T"])
    report = {"machine": machine, "k": args.k, "results": results}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return report


if __name__ == "__main__":
    main()
