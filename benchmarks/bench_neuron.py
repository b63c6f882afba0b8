"""Neuron-only benchmark: multi-step LIF on ``[T, N]``, spikeflow's backends vs the peers.

For every (T, N) it times the forward (under ``no_grad``) and the forward+backward
(``spikes.sum().backward()`` into the input's gradient; ``--upstream full``: the backward
of a fixed random ``[T, N]`` gradient, as a following layer sends) of each library's LIF, all built
from the same parameters (``_common.LIFParams``), and a memory floor: the time to read
the input and write the output once (``out.copy_(x)`` on ``[T, N]``) for the forward,
twice that for forward+backward (the backward reads the output's gradient and writes
the input's). Ratios: each runner vs spikeflow's fastest backend, and vs the floor.
The summary also compares spikeflow with the same call of an identity "neuron"
(``x * 1.0``): the harness's own costs (fresh outputs, the ``.sum()``, the autograd
engine) with nothing of a neuron.

    python benchmarks/bench_neuron.py                      # default sizes, a few minutes
    python benchmarks/bench_neuron.py --T 4 16 --N 1e4 1e5
    python benchmarks/bench_neuron.py --N 1e7 --T 4 --max-elems 0   # big, opt-in
    python benchmarks/bench_neuron.py --compile --upstream full       # + torch.compile

Sizes with ``T * N`` above ``--max-elems`` (default 6.4e7) are skipped unless the cap is
raised (0 = no cap): the reference loops keep several ``[T, N]`` tensors for backward.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import _common as C
import torch


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--T", type=int, nargs="+", default=[4, 16, 64, 256], help="time steps")
    ap.add_argument(
        "--N", type=float, nargs="+", default=[1e4, 1e5, 1e6], help="neurons (1e7 is opt-in)"
    )
    ap.add_argument(
        "--max-elems", type=float, default=6.4e7, help="skip T*N above this (0: no cap)"
    )
    ap.add_argument(
        "--upstream",
        choices=["sum", "full"],
        default="sum",
        help="forward+backward loss: spikes.sum() (default), or a fixed random [T, N]\n"
        "upstream gradient, as a following layer sends (spikes.backward(g))",
    )
    C.add_common_args(ap, repeats=7, budget=2.0)
    return ap.parse_args(argv)


def fmt_n(n: int) -> str:
    exp = len(str(n)) - 1
    return f"1e{exp}" if n == 10**exp else str(n)


def copy_time(x: torch.Tensor, device: torch.device, repeats: int) -> tuple[float, float]:
    """Median times of reading ``x`` and writing a tensor of its size once: into a
    preallocated tensor (``out.copy_(x)``, the floor) and into a fresh one
    (``x.clone()``, which adds the first-touch page faults of a new allocation)."""
    out = torch.empty_like(x)
    copy = C.median(C.measure(lambda: out.copy_(x), device, warmup=2, repeats=repeats))
    out = None  # free it before timing the fresh allocations
    clone = C.median(C.measure(lambda: x.clone(), device, warmup=2, repeats=repeats))
    return copy, clone


def _copy_neuron(x: torch.Tensor) -> torch.Tensor:
    return x * 1.0


#: A "neuron" that only copies its input: timed with the same harness (fresh output,
#: ``.sum()``, autograd engine, fresh input gradient), it is the floor of a whole call.
IDENTITY = C.Runner("identity (x * 1.0)", _copy_neuron, "floor")


def make_call(r: C.Runner, x: torch.Tensor, mode: str, upstream: str = "sum") -> Callable[[], None]:
    """One forward (no_grad) or forward+backward of ``r`` on ``x``; the backward from
    ``spikes.sum()`` or (``upstream="full"``) from a fixed random ``[T, N]`` gradient."""
    if mode == "fwd":

        def call() -> None:
            with torch.no_grad():
                r.fn(x)

    elif upstream == "full":
        xg = x.clone().requires_grad_(True)
        g = torch.rand(x.shape, generator=torch.Generator().manual_seed(2)).to(x.device)

        def call() -> None:
            xg.grad = None
            r.fn(xg).backward(g)

    else:
        xg = x.clone().requires_grad_(True)

        def call() -> None:
            xg.grad = None
            r.fn(xg).sum().backward()

    return call


def time_runner(
    r: C.Runner, x: torch.Tensor, mode: str, device: torch.device, args: argparse.Namespace
) -> float:
    """Median seconds of one forward (no_grad) or forward+backward of ``r`` on ``x``."""
    call = make_call(r, x, mode, args.upstream)
    if r.compiled:
        print(f"  {r.name}: first call (compiles) {C.first_call_s(call, device):.1f} s")
    times = C.measure(call, device, warmup=args.warmup, repeats=args.repeats, budget_s=args.budget)
    return C.median(times)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device, machine = C.start(args.threads, args.device)

    params = C.LIFParams()
    runners, unavailable = C.build_runners(
        params, device, args.libs, args.peer_loop, compile_runners=args.compile
    )
    print(f"LIF: {params}")
    for r in runners:
        print(f"  {r.name}: {r.note}" if r.note else f"  {r.name}")
    for lib, reason in unavailable.items():
        print(f"  {lib}: unavailable: {reason}")
    probe = torch.zeros(2, 2, device=device)
    print(f"spikeflow backend='auto' picks {C.spikeflow_auto_backend(probe)!r} here")

    check: dict[str, str] = {}
    if not args.no_check:
        xc = torch.rand(64, 4, 512, device=device) * 2.5
        check = C.check_correctness(runners, params, xc, "uniform [0, 2.5)")
    print()

    Ts, Ns = args.T, [int(n) for n in args.N]
    results: list[dict] = []
    summary_rows: list[list[str]] = []
    peer_names = [r.name for r in runners]
    for T in Ts:
        for N in Ns:
            if args.max_elems and T * N > args.max_elems:
                print(f"T={T} N={fmt_n(N)}: skipped (T*N > --max-elems {args.max_elems:g})")
                continue
            x = torch.rand(T, N, device=device) * 2.5
            floor_t, clone_t = copy_time(x, device, max(args.repeats, 5))
            floors = {"fwd": floor_t, "fwdbwd": 2 * floor_t}
            for mode in args.modes:
                times: dict[str, float | None] = {}
                errors: dict[str, str] = {}
                for r in runners:
                    try:
                        times[r.name] = time_runner(r, x, mode, device, args)
                    except Exception as error:  # report and go on (e.g. out of memory)
                        times[r.name] = None
                        errors[r.name] = f"{type(error).__name__}: {error}".splitlines()[0][:120]
                best = C.best_spikeflow(runners, times)
                floor = floors[mode]
                identity = time_runner(IDENTITY, x, mode, device, args)
                kernels = None
                fastest = next((r for r in runners if r.name == best[0]), None)
                if fastest is not None and best[1] is not None:
                    call = make_call(fastest, x, mode, args.upstream)
                    kernels = C.kernel_time(call, device, max(args.repeats, 5), args.budget)
                label = "forward (no_grad)" if mode == "fwd" else "forward+backward"
                k = 1 if mode == "fwd" else 2
                print(
                    f"T={T} N={fmt_n(N)} {label}: floor {C.fmt_ms(floor)} ms "
                    f"({'' if k == 1 else '2x '}out.copy_(x) on [T, N] float32; "
                    f"{'' if k == 1 else '2x '}x.clone() {C.fmt_ms(k * clone_t)} ms); "
                    f"the same call of an identity neuron (x * 1.0) {C.fmt_ms(identity)} ms"
                )
                rows = []
                for r in runners:
                    t = times[r.name]
                    rows.append(
                        [
                            r.name,
                            C.fmt_ms(t) if t is not None else "error",
                            C.fmt_ratio(t, best[1]),
                            C.fmt_ratio(t, floor),
                            errors.get(r.name, check.get(r.name, "")),
                        ]
                    )
                C.print_table(
                    ["runner", "median ms", f"vs {best[0]}", "vs floor", "check"],
                    rows,
                    indent="  ",
                )
                if kernels is not None:
                    print(
                        f"  {best[0]}'s kernels alone (on the buffers of a call, no autograd, "
                        f"no fresh allocations): {C.fmt_ms(kernels)} ms, "
                        f"{C.fmt_ratio(kernels, floor)} the floor"
                    )
                results.append(
                    {
                        "T": T,
                        "N": N,
                        "mode": mode,
                        "floor_s": floor,
                        "clone_floor_s": (1 if mode == "fwd" else 2) * clone_t,
                        "identity_call_s": identity,
                        "times_s": times,
                        "errors": errors,
                        "spikeflow_best": best[0],
                        "spikeflow_kernels_s": kernels,
                    }
                )
                summary_rows.append(
                    [
                        f"T={T} N={fmt_n(N)} {mode}",
                        C.fmt_ms(best[1]),
                        C.fmt_ratio(best[1], floor),
                        C.fmt_ratio(best[1], k * clone_t),
                        C.fmt_ratio(best[1], identity),
                        C.fmt_ratio(kernels, floor) if kernels is not None else "-",
                        *[C.fmt_ratio(times[n], best[1]) for n in peer_names],
                    ]
                )
            del x

    print(
        "\nsummary: spikeflow's best backend (ms, vs the copy_ floor, the allocating x.clone() "
        "floor and the same call of an identity neuron; its kernels alone vs the copy_ floor), "
        "every runner relative to it"
    )
    headers = ["size / mode", "sf best ms", "sf vs floor", "sf vs clone", "sf vs identity",
               "kernels vs floor"]  # fmt: skip
    C.print_table(
        [*headers, *peer_names],
        summary_rows,
        indent="  ",
    )
    report = {
        "machine": machine,
        "check": check,
        "unavailable": unavailable,
        "results": results,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return report


if __name__ == "__main__":
    main()
