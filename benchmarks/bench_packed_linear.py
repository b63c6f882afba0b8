"""Linear on binary spikes: spikeflow's packed and sparse paths vs SpikingJelly's vs the
dense matmul, side by side in one run.

The input is ``[M, K]`` random spikes (each 1 with probability ``rate``; ``M`` = time
steps x batch), the layer ``Linear(K, N)``, the same weights for everyone. Runners:

- ``dense matmul``: ``torch.nn.functional.linear`` on the float spikes (what a plain
  network does; SpikingJelly's ``sparse_linear(strategy="torch")`` is this call).
- ``sf packed c`` / ``sf packed torch``: ``spikeflow.functional.packed_spike_linear`` on
  the row-packed bits (packed once, outside the timing), ``backend="c"`` (spike by spike)
  and ``backend="torch"`` (unpack, then the dense matmul).
- ``sf sparse c``: ``spikeflow.functional.sparse_linear(strategy="sparse")`` on the float
  spikes (checks and packs them inside the call).
- ``sj packed`` / ``sj sparse``: SpikingJelly 2.0's ``packed_spike_linear`` and
  ``sparse_linear(strategy="sparse")`` (CUDA only in SpikingJelly: reported as unavailable
  on a CPU), and ``sj sparse torch`` (``strategy="torch"``).

``fwd``: under ``no_grad``. ``fwdbwd``: ``(y * g).sum().backward()`` into the weight and
bias (the packed runners; the spikes are integers) or into the weight, bias and spikes
(``sparse``, against ``dense matmul, all grads``). Ratios are to the dense matmul of the
same mode (``2.00x`` = twice its time). Each time is the minimum of ``--repeats`` calls
(``--stat median`` for the median): on a shared machine the minimum is the least
disturbed estimate of the call's own cost.

    python benchmarks/bench_packed_linear.py                    # ~1-2 min on 2 cores
    python benchmarks/bench_packed_linear.py --M 256 --K 1024 --N 1024 --rates 0.05 0.2
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from _common import fmt_ms, fmt_ratio, measure, median, print_table, start

from spikeflow import functional as sff


def _peer() -> tuple[object | None, str]:
    try:
        from spikingjelly.activation_based import functional as sjf
    except Exception as error:
        return None, f"unavailable: {type(error).__name__}: {error}"
    return sjf, ""


def _runners(
    spike: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, mode: str
) -> dict[str, Callable[[], object] | str]:
    """Name -> a call to time (or the reason it cannot run)."""
    packed = sff.bit_pack_spike_dense(spike)
    g = torch.randn(spike.shape[0], weight.shape[0], dtype=weight.dtype, device=weight.device)
    w = weight.detach().requires_grad_(mode == "fwdbwd")
    b = bias.detach().requires_grad_(mode == "fwdbwd")
    s = spike.detach().requires_grad_(mode == "fwdbwd")

    def run(f: Callable[[], torch.Tensor], grads: tuple[torch.Tensor, ...]) -> Callable[[], object]:
        def call() -> object:
            if mode == "fwd":
                with torch.no_grad():
                    return f()
            return torch.autograd.grad((f() * g).sum(), grads)

        return call

    sjf, why = _peer()
    out: dict[str, Callable[[], object] | str] = {
        "dense matmul": run(lambda: torch.nn.functional.linear(spike, w, b), (w, b)),
        "sf packed c": run(lambda: sff.packed_spike_linear(packed, w, b, backend="c"), (w, b)),
        "sf packed torch": run(
            lambda: sff.packed_spike_linear(packed, w, b, backend="torch"), (w, b)
        ),
    }
    if mode == "fwdbwd":
        out["dense matmul, all grads"] = run(lambda: torch.nn.functional.linear(s, w, b), (s, w, b))
    out["sf sparse c"] = run(
        lambda: sff.sparse_linear(s, w, b, "sparse", backend="c"),
        (s, w, b) if mode == "fwdbwd" else (),
    )
    if sjf is None:
        out["sj packed"] = out["sj sparse"] = out["sj sparse torch"] = why
        return out
    for name, f, grads in [
        ("sj packed", lambda: sjf.packed_spike_linear(packed, w, b), (w, b)),
        ("sj sparse", lambda: sjf.sparse_linear(s, w, b, strategy="sparse"), (s, w, b)),
        ("sj sparse torch", lambda: sjf.sparse_linear(s, w, b, strategy="torch"), (s, w, b)),
    ]:
        try:
            call = run(f, grads)
            call()
            out[name] = call
        except Exception as error:
            out[name] = f"unavailable: {str(error).splitlines()[0][:60]}"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--M", type=int, nargs="+", default=[256], help="rows (T x batch)")
    ap.add_argument("--K", type=int, nargs="+", default=[512, 2048], help="inputs")
    ap.add_argument("--N", type=int, nargs="+", default=[512], help="outputs")
    ap.add_argument("--rates", type=float, nargs="+", default=[0.01, 0.05, 0.1, 0.2, 0.5])
    ap.add_argument("--modes", nargs="+", choices=["fwd", "fwdbwd"], default=["fwd", "fwdbwd"])
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--stat", choices=["min", "median"], default="min")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads(N)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    device, _ = start(args.threads, args.device)
    dtype = getattr(torch, args.dtype)
    print(f"dtype {args.dtype}; {args.stat} of {args.repeats} calls after 1 warm-up; ms")
    for m in args.M:
        for k in args.K:
            for n in args.N:
                weight = torch.randn(n, k, dtype=dtype, device=device) / k**0.5
                bias = torch.randn(n, dtype=dtype, device=device)
                for mode in args.modes:
                    _table(m, k, n, mode, args, weight, bias)


def _table(m: int, k: int, n: int, mode: str, args, weight, bias) -> None:
    names: list[str] = []
    stat = min if args.stat == "min" else median
    cells: dict[str, list[str]] = {}
    reasons: dict[str, str] = {}
    for rate in args.rates:
        g = torch.Generator().manual_seed(0)
        spike = (torch.rand(m, k, generator=g) < rate).to(weight.dtype).to(weight.device)
        runners = _runners(spike, weight, bias, mode)
        times = {
            name: (stat(measure(r, weight.device, repeats=args.repeats)) if callable(r) else r)
            for name, r in runners.items()
        }
        dense = times["dense matmul"]
        all_grads = times.get("dense matmul, all grads", dense)
        for name, t in times.items():
            if name not in cells:
                names.append(name)
                cells[name] = []
            if isinstance(t, str):
                cells[name].append("n/a")
                reasons[name] = t
                continue
            base = all_grads if "sparse" in name or "all grads" in name else dense
            cells[name].append(f"{fmt_ms(t)} ({fmt_ratio(t, base)})")
    print(f"\nM={m} K={k} N={n}, {mode}; (ratio to the dense matmul, same gradients)")
    print_table(["runner", *(f"rate {r:g}" for r in args.rates)], [[x, *cells[x]] for x in names])
    for name, reason in reasons.items():
        print(f"  {name}: {reason}")


if __name__ == "__main__":
    main()
