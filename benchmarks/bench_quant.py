"""Quantized membranes: spikeflow's quantized LIF vs snnTorch's ``state_quant``, side by side.

The same neuron in both: a LIF with soft reset, ``U = 0.5 U + I`` (spikeflow's
``LIFNode(tau=2, decay_input=False, v_reset=None, strict_firing=True)``; snnTorch's
``Leaky(beta=0.5, reset_mechanism="subtract", reset_delay=False)``), threshold 1, the
ATan surrogate (alpha 2 in both), and the membrane on an 8-bit grid of step 1/64 from
-2 to 127/64, rounded to the nearest level before firing (spikeflow:
``apply_membrane_quantization(bits=8)``; snnTorch: ``state_quant(num_bits=8,
lower_limit=1, upper_limit=63/64)``, the same 256 levels). The inputs are multiples of
1/4096 plus 1/8192, so no membrane falls half-way between two levels (spikeflow rounds
such a tie up, snnTorch down); the script first checks that the spikes are identical and
the input gradients equal, then times forward (no_grad) and forward+backward
(``spikes.sum().backward()``) on ``[T, N]``. spikeflow's float LIF is timed too: the
cost of the rounding itself.

    python benchmarks/bench_quant.py                 # ~1 min on 2 cores
    python benchmarks/bench_quant.py --T 64 --N 1e4 1e5

snnTorch is a benchmark extra (benchmarks/README.md, "Installing the peers").
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import torch
from _common import fmt_ms, fmt_ratio, measure, print_table
from _common import start as start_benchmark

from spikeflow import neurons, quant
from spikeflow.surrogate import ATan

BITS, FRACTION_BITS = 8, 6  # levels k/64, k = -128 ... 127


def spikeflow_lif(quantized: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    node = neurons.LIFNode(tau=2.0, decay_input=False, v_reset=None, strict_firing=True,
                           surrogate_function=ATan(alpha=2.0))  # fmt: skip
    if quantized:
        quant.apply_membrane_quantization(node, bits=BITS, fraction_bits=FRACTION_BITS)
    return node


def snntorch_lif() -> Callable[[torch.Tensor], torch.Tensor]:
    import snntorch as snn
    from snntorch import surrogate
    from snntorch.functional import quant as snn_quant

    upper = (2 ** (BITS - 1) - 1) / 2**FRACTION_BITS - 1  # the top level is 1 + upper
    q = snn_quant.state_quant(num_bits=BITS, uniform=True, threshold=1.0, lower_limit=1.0,
                              upper_limit=upper)  # fmt: skip
    node = snn.Leaky(beta=0.5, threshold=1.0, reset_mechanism="subtract", reset_delay=False,
                     state_quant=q, spike_grad=surrogate.atan(alpha=2.0))  # fmt: skip

    def run(x: torch.Tensor) -> torch.Tensor:
        mem = torch.zeros_like(x[0])
        spikes = []
        for x_t in x.unbind(0):
            s, mem = node(x_t, mem)
            spikes.append(s)
        return torch.stack(spikes)

    return run


def tie_free_input(T: int, N: int, device: torch.device) -> torch.Tensor:
    """Uniform [0, 1) on multiples of 1/4096, plus 1/8192: a membrane 0.5 U + I with U on
    the 1/64 grid is then never half-way between two levels."""
    return (torch.randint(0, 4096, (T, N), device=device) / 4096 + 1 / 8192).float()


def check(runners: dict[str, Callable], device: torch.device) -> None:
    """Spikes identical and input gradients equal between the quantized runners."""
    x = tie_free_input(32, 2000, device)
    results = {}
    for name, run in runners.items():
        if name == "spikeflow float":
            continue
        xr = x.clone().requires_grad_()
        spikes = run(xr)
        spikes.sum().backward()
        results[name] = (spikes.detach(), xr.grad)
    (s0, g0), (s1, g1) = results.values()
    assert torch.equal(s0, s1), "spikes differ between spikeflow and snnTorch"
    torch.testing.assert_close(g0, g1, rtol=1e-5, atol=1e-6)
    rate = s0.mean().item()
    print(f"check: spikes identical (rate {rate:.3f}), input gradients equal (32 x 2000)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--T", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--N", type=float, nargs="+", default=[1e4, 1e5])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    device, _ = start_benchmark(args.threads, args.device)
    runners: dict[str, Callable] = {
        "spikeflow quantized": spikeflow_lif(True).to(device),
        "spikeflow float": spikeflow_lif(False).to(device),
    }
    try:
        runners["snntorch state_quant"] = snntorch_lif()
    except ImportError as exc:
        print(f"snntorch unavailable ({exc}); timing spikeflow alone")
    if len(runners) == 3:
        check(runners, device)
    for T in args.T:
        for N in (int(n) for n in args.N):
            x = tie_free_input(T, N, device)
            rows = []
            for mode in ("fwd", "fwdbwd"):
                times = {}
                for name, run in runners.items():
                    if mode == "fwd":

                        def call(run: Callable = run, x: torch.Tensor = x) -> None:
                            with torch.no_grad():
                                run(x)
                    else:
                        xg = x.clone().requires_grad_()

                        def call(run: Callable = run, xg: torch.Tensor = xg) -> None:
                            run(xg).sum().backward()
                            xg.grad = None

                    times[name] = statistics.median(
                        measure(call, device, repeats=args.repeats, budget_s=5.0)
                    )
                ours = times["spikeflow quantized"]
                for name, t in times.items():
                    rows.append([f"{mode} {name}", fmt_ms(t), fmt_ratio(t, ours)])
            print(f"\nT={T} N={N}")
            print_table(["runner", "median ms", "vs spikeflow quantized"], rows, indent="  ")


if __name__ == "__main__":
    main()
