"""Why the CPU backend is generated C: first-call cost and run time, measured.

Compares, for an LIF layer (T=64, N=1e5 by default, forward+backward):
1. spikeflow's generated C kernel: build time with an empty kernel cache (code
   generation + C compiler), load time from the on-disk cache in a new process, run time;
2. torch.compile (inductor) of the reference loop: compile time of the first call and
   run time afterwards (inductor fuses the unrolled loop itself);
3. a C++ torch extension (torch.utils.cpp_extension.load_inline) of an empty function:
   only its build time, the fixed cost that any hand-written C++ kernel pays.

    python benchmarks/bench_cpu_technology.py [--T 64] [--N 1e5] [--skip-cpp]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import torch

_FRESH_PROCESS_LOAD = """
import time
t0 = time.perf_counter()
import torch
from spikeflow.neurons import LIFNode
x = torch.rand({T}, {N}, requires_grad=True)
LIFNode(backend="cpu")(x).sum().backward()
print(time.perf_counter() - t0)
"""


def _median_time(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, default=64)
    parser.add_argument("--N", type=float, default=1e5)
    parser.add_argument("--skip-cpp", action="store_true", help="skip the C++ extension build")
    args = parser.parse_args()
    T, N = args.T, int(args.N)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, LIF T={T} N={N}")

    with tempfile.TemporaryDirectory() as cache:
        os.environ["SPIKEFLOW_CACHE_DIR"] = cache
        from spikeflow.neurons import LIFNode

        x = torch.rand(T, N, requires_grad=True)
        node = LIFNode(backend="cpu")
        t0 = time.perf_counter()
        node(x).sum().backward()
        first = time.perf_counter() - t0
        run = _median_time(lambda: node(x).sum().backward())
        code = _FRESH_PROCESS_LOAD.format(T=T, N=N)
        env = dict(os.environ, SPIKEFLOW_CACHE_DIR=cache)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        cached = float(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else float("nan")
        print(f"generated C:      first call {first:7.2f} s (build), new process with cache "
              f"{cached:5.2f} s (import torch included), run {run * 1e3:7.1f} ms")  # fmt: skip

    ref = LIFNode(backend="torch")
    eager = _median_time(lambda: ref(x).sum().backward())
    torch._dynamo.reset()
    # A cold compile, as the C build above: inductor's on-disk caches (FX graphs,
    # AOTAutograd) would otherwise serve a second run of this script.
    torch._inductor.config.fx_graph_cache = False
    torch._functorch.config.enable_autograd_cache = False
    compiled = torch.compile(ref)
    t0 = time.perf_counter()
    compiled(x).sum().backward()
    first = time.perf_counter() - t0
    run = _median_time(lambda: compiled(x).sum().backward())
    print(f"inductor:         first call {first:7.2f} s (compile, on-disk caches off), "
          f"run {run * 1e3:7.1f} ms (reference loop eager: {eager * 1e3:.1f} ms)")  # fmt: skip

    if not args.skip_cpp:
        from torch.utils.cpp_extension import load_inline

        with tempfile.TemporaryDirectory() as build:
            t0 = time.perf_counter()
            load_inline(
                name="spikeflow_probe",
                cpp_sources="torch::Tensor probe(torch::Tensor x) { return x; }",
                functions=["probe"],
                build_directory=build,
                verbose=False,
            )
            print(f"C++ extension:    build of an empty function {time.perf_counter() - t0:7.2f} s")


if __name__ == "__main__":
    main()
