"""The Open Neuromorphic layer benchmark: ``Linear(n, n)`` followed by a LIF neuron.

Input ``[T, B, n]`` (default T = 500, batch 16, random binary spikes with p = 0.5, or
uniform with ``--input uniform``), ``n`` in {512, 2048}. For every library it times the
forward (under ``no_grad``) and the forward+backward (``outputs.sum().backward()`` into
the Linear's weight and bias) of the same network: one shared ``nn.Linear`` (same
weights for everybody) applied to the whole sequence at once, then the library's LIF
(``_common.LIFParams``). The "matmul floor" is the same network with the neuron replaced
by the identity. Reported: the median over ``--repeats`` calls after warmup, each runner
vs spikeflow's fastest backend, and spikeflow vs the floor.

    python benchmarks/bench_onm_layer.py                 # n = 512 and 2048, CPU
    python benchmarks/bench_onm_layer.py --n 512 --repeats 10 --threads 1
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import _common as C
import torch
from torch import Tensor, nn


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[512, 2048], help="layer width(s)")
    ap.add_argument("--T", type=int, default=500, help="time steps")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--input", choices=["binary", "uniform"], default="binary")
    C.add_common_args(ap, repeats=5, budget=5.0)
    return ap.parse_args(argv)


def make_input(shape: tuple[int, ...], kind: str, device: torch.device) -> Tensor:
    if kind == "binary":
        return (torch.rand(shape, device=device) < 0.5).float()
    return torch.rand(shape, device=device)


def time_network(
    linear: nn.Linear,
    neuron: Callable[[Tensor], Tensor],
    x: Tensor,
    mode: str,
    device: torch.device,
    args: argparse.Namespace,
    compiled: str = "",
) -> float:
    """Median seconds of ``neuron(linear(x))``: forward (no_grad) or forward+backward."""
    if mode == "fwd":

        def call() -> None:
            with torch.no_grad():
                neuron(linear(x))

    else:

        def call() -> None:
            linear.zero_grad(set_to_none=True)
            neuron(linear(x)).sum().backward()

    if compiled:  # the name of a compiled runner: its first call compiles
        print(f"  {compiled}: first call (compiles) {C.first_call_s(call, device):.1f} s")
    times = C.measure(call, device, warmup=args.warmup, repeats=args.repeats, budget_s=args.budget)
    return C.median(times)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device, machine = C.start(args.threads, args.device)

    params = C.LIFParams()
    runners, unavailable = C.build_runners(
        params, device, args.libs, args.peer_loop, compile_runners=args.compile
    )
    print(
        f"network: Linear(n, n) -> LIF {params}; input {args.input}, T={args.T}, batch={args.batch}"
    )
    for r in runners:
        print(f"  {r.name}: {r.note}" if r.note else f"  {r.name}")
    for lib, reason in unavailable.items():
        print(f"  {lib}: unavailable: {reason}")
    probe = torch.zeros(2, 2, device=device)
    print(f"spikeflow backend='auto' picks {C.spikeflow_auto_backend(probe)!r} here")

    check: dict[str, str] = {}
    if not args.no_check:
        # The network's own input distribution through a small Linear, then a uniform
        # drive that makes the neurons fire often (a stricter test of the dynamics).
        small = nn.Linear(128, 128).to(device)
        with torch.no_grad():
            drive = small(make_input((64, 4, 128), args.input, device))
        check = C.check_correctness(runners, params, drive, f"Linear(128, 128) of {args.input}")
        for name, status in C.check_correctness(
            runners, params, torch.rand(64, 4, 128, device=device) * 2.5, "uniform [0, 2.5)"
        ).items():
            if status != "ok":
                check[name] = status
    print()

    results: list[dict] = []
    summary_rows: list[list[str]] = []
    names = [r.name for r in runners]
    for n in args.n:
        linear = nn.Linear(n, n).to(device)
        x = make_input((args.T, args.batch, n), args.input, device)
        if runners:
            with torch.no_grad():
                rate = runners[0].fn(linear(x)).float().mean().item()
            print(f"n={n}: firing rate of the LIF output {rate:.4f} ({runners[0].name})")
        for mode in args.modes:
            floor = time_network(linear, lambda y: y, x, mode, device, args)
            times: dict[str, float | None] = {}
            errors: dict[str, str] = {}
            for r in runners:
                try:
                    compiled = r.name if r.compiled else ""
                    times[r.name] = time_network(linear, r.fn, x, mode, device, args, compiled)
                except Exception as error:  # report and go on
                    times[r.name] = None
                    errors[r.name] = f"{type(error).__name__}: {error}".splitlines()[0][:120]
            best_name, best = C.best_spikeflow(runners, times)
            label = "forward (no_grad)" if mode == "fwd" else "forward+backward"
            print(
                f"n={n} T={args.T} batch={args.batch} {label}: matmul floor (Linear only) "
                f"{C.fmt_ms(floor)} ms"
            )
            rows = [["Linear only (floor)", C.fmt_ms(floor), C.fmt_ratio(floor, best), "1.00x",
                     "-", ""]]  # fmt: skip
            for r in runners:
                t = times[r.name]
                rows.append(
                    [
                        r.name,
                        C.fmt_ms(t) if t is not None else "error",
                        C.fmt_ratio(t, best),
                        C.fmt_ratio(t, floor),
                        C.fmt_ms(t - floor) if t is not None else "-",
                        errors.get(r.name, check.get(r.name, "")),
                    ]
                )
            C.print_table(
                ["runner", "median ms", f"vs {best_name}", "vs floor", "neuron ms", "check"],
                rows,
                indent="  ",
            )
            results.append(
                {
                    "n": n,
                    "T": args.T,
                    "batch": args.batch,
                    "mode": mode,
                    "floor_s": floor,
                    "times_s": times,
                    "errors": errors,
                    "spikeflow_best": best_name,
                }
            )
            summary_rows.append(
                [
                    f"n={n} {mode}",
                    C.fmt_ms(floor),
                    C.fmt_ms(best),
                    C.fmt_ratio(best, floor),
                    *[C.fmt_ratio(times[name], best) for name in names],
                ]
            )
        del x, linear

    print("\nsummary: floor and spikeflow's best (ms), every runner relative to spikeflow's best")
    C.print_table(
        ["size / mode", "floor ms", "sf best ms", "sf vs floor", *names],
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
