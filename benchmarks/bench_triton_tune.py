"""Sweep the Triton kernels' launch configuration (neurons per program, warps) on a GPU.

For each (T, N) it times LIF forward (no_grad) and forward+backward with every
``(block, num_warps)`` pair and prints the medians and the best pair per size, next to
SpikingJelly's LIF when it is installed. Use the result to choose
``spikeflow.kernels.triton_backend.set_launch_config`` defaults (spikes are identical
for every configuration; ``tests/test_kernels_fused.py`` checks it).

    python benchmarks/bench_triton_tune.py                 # CUDA, ~30 s
    TRITON_INTERPRET=1 python benchmarks/bench_triton_tune.py --device cpu \\
        --T 4 --N 1000 --blocks 64 128 --warps 1 2 --repeats 2   # smoke run, no GPU
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Callable

import _common as C
import torch

from spikeflow.kernels import triton_backend
from spikeflow.neurons import LIFNode


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--T", type=int, nargs="+", default=[4, 16, 64])
    ap.add_argument("--N", type=float, nargs="+", default=[1e5, 1e6, 1e7])
    ap.add_argument("--blocks", type=int, nargs="+", default=[128, 256, 512, 1024])
    ap.add_argument("--warps", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    return ap.parse_args(argv)


def time_lif(node: Callable, x: torch.Tensor, device: torch.device, repeats: int) -> tuple:
    """Median seconds of a forward (no_grad) and of a forward+backward of ``node``."""

    def fwd() -> None:
        with torch.no_grad():
            node(x)

    xg = x.clone().requires_grad_()
    grad = torch.ones_like(x)

    def fwdbwd() -> None:
        xg.grad = None
        node(xg).backward(grad)

    f = C.median(C.measure(fwd, device, warmup=2, repeats=repeats))
    fb = C.median(C.measure(fwdbwd, device, warmup=2, repeats=repeats))
    return f, fb


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    for line in C.describe_machine(device):
        print(line)
    params = C.LIFParams()
    peer = None
    try:
        peer = C._spikingjelly_runner(params, device, "unbind").fn
    except Exception as exc:  # any import failure means "no peer"
        print(f"spikingjelly unavailable: {exc}")
    old = triton_backend.launch_config()
    rows, results = [], []
    try:
        for T, n in itertools.product(args.T, (int(v) for v in args.N)):
            x = torch.rand(T, n, device=device) * 2.5
            timings = {}
            for block, warps in itertools.product(args.blocks, args.warps):
                triton_backend.set_launch_config(block, warps)
                node = LIFNode(**params.spikeflow_kwargs(), backend="triton").to(device)
                timings[(block, warps)] = time_lif(node, x, device, args.repeats)
            sj = time_lif(peer, x, device, args.repeats) if peer is not None else None
            for mode, i in (("fwd", 0), ("fwdbwd", 1)):
                (bb, bw), best = min(timings.items(), key=lambda kv: kv[1][i])
                default = timings.get((256, 4), (float("nan"),) * 2)[i]
                sj_ms = sj[i] * 1e3 if sj is not None else float("nan")
                size = f"T={T} N={n:.0e} {mode}".replace("e+0", "e")
                rows.append(
                    [size, f"{bb}/{bw}", f"{best[i] * 1e3:.4f}", f"{default * 1e3:.4f}",
                     f"{sj_ms:.4f}", f"{sj_ms / (best[i] * 1e3):.2f}x"]
                )  # fmt: skip
                # Each size as it finishes, so a run stopped early keeps what it measured.
                print("  ".join(rows[-1]), flush=True)
            results.append(
                {"T": T, "N": n, "sj": sj,
                 "timings": {f"{b}/{w}": t for (b, w), t in timings.items()}}
            )  # fmt: skip
            x = None
    finally:
        triton_backend.set_launch_config(*old)
    print()
    head = ["size / mode", "best block/warps", "best ms", "256/4 ms", "spikingjelly ms"]
    head.append("sj / best")
    C.print_table(head, rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
