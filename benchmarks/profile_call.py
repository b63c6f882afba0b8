"""Where the time of one neuron call goes: torch.profiler over LIF forward+backward calls.

bench_neuron.py times whole calls; on a GPU at N <= 1e6 those are dominated by host
work (Python, autograd, kernel launches), not by the kernels. This script profiles a
few calls of each library's LIF and prints, per library, the wall time per call, the
host-side operators by self CPU time, and the device kernels by device time.

    python benchmarks/profile_call.py --device cuda --T 16 --N 1e5
    python benchmarks/profile_call.py --T 16 --N 1e5 --libs spikeflow   # on the CPU
"""

from __future__ import annotations

import argparse
import time

import _common as C
import torch
from torch.profiler import ProfilerActivity, profile


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--T", type=int, default=16)
    ap.add_argument("--N", type=float, default=1e5)
    ap.add_argument("--calls", type=int, default=10, help="profiled calls per library")
    ap.add_argument("--rows", type=int, default=12, help="rows of each table")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--libs", nargs="+", default=None, help="subset of " + " ".join(C.PEERS))
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device, _ = C.start(args.threads, args.device)
    runners, unavailable = C.build_runners(C.LIFParams(), device, args.libs)
    for lib, reason in unavailable.items():
        print(f"{lib}: unavailable: {reason}")
    x = (torch.rand(args.T, int(args.N), device=device) * 2.5).requires_grad_()
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    for r in runners:
        if r.name == "spikeflow[torch]":
            continue  # the reference loop: its cost is the per-step kernels, as snnTorch's

        def call(fn=r.fn) -> None:
            x.grad = None
            fn(x).sum().backward()

        for _ in range(3):  # warm-up: compilation, allocator, autotuning
            call()
        C.sync(device)
        start = time.perf_counter()
        with profile(activities=activities) as prof:
            for _ in range(args.calls):
                call()
            C.sync(device)
        per_call = (time.perf_counter() - start) / args.calls
        print(f"\n== {r.name}: T={args.T} N={int(args.N)} forward+backward, "
              f"{per_call * 1e3:.3f} ms per call under the profiler")  # fmt: skip
        table = prof.key_averages()
        print(table.table(sort_by="self_cpu_time_total", row_limit=args.rows))
        if device.type == "cuda":
            print(table.table(sort_by="self_device_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
