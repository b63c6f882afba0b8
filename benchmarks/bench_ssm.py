"""Training-step time of the spiking S4D classifier vs its recurrent-LIF baseline.

One training step (forward, backward, Adam step) of ``spiking_ssm`` (S4D kernels
applied by FFT: parallel over T) and ``recurrent_lif_seq`` (a loop over T), the two
models of docs/ssm.md with their parameter counts there, at the sizes of its runs (the
digits as 64 pixel steps, batch 32; N-MNIST frames, T = 20, batch 32) and on longer
pixel sequences (T = 256 and 1,024, batch 8) where the loop's cost grows with T. The two
models are timed in alternation, so a change of load on a shared machine reaches both.

    python benchmarks/bench_ssm.py               # ~2 min on one thread
    python benchmarks/bench_ssm.py --threads 2 --repeats 9
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _common import fmt_ratio, print_table
from _common import start as start_benchmark

from spikeflow.models import create_model

#: (label, model kwargs shared, SSM kwargs, baseline kwargs, input shape [T, B, ...])
CASES = [
    ("digits pixels T=64 B=32", {"input_mode": "pixels"}, {}, {"hidden": 105},
     (64, 32, 1, 8, 8)),
    ("N-MNIST frames T=20 B=32", {"input_mode": "frames", "in_channels": 2, "input_size": 34},
     {}, {"hidden": 72}, (20, 32, 2, 34, 34)),
    ("pixels T=256 B=8", {"input_mode": "pixels"}, {}, {"hidden": 105}, (256, 8, 1, 16, 16)),
    ("pixels T=1024 B=8", {"input_mode": "pixels"}, {}, {"hidden": 105}, (1024, 8, 1, 32, 32)),
]  # fmt: skip


def _step_fn(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x).mean(0), y)
        loss.backward()
        optimizer.step()

    return step


def _timed(fn) -> float:
    begin = time.perf_counter()
    fn()
    return time.perf_counter() - begin


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    device, _ = start_benchmark(args.threads, "cpu")
    rows = []
    for label, shared, ssm_kwargs, rlif_kwargs, shape in CASES:
        x = torch.rand(shape, device=device)
        y = torch.randint(0, 10, (shape[1],), device=device)
        steps, sizes = {}, {}
        for name, extra in (("spiking_ssm", ssm_kwargs), ("recurrent_lif_seq", rlif_kwargs)):
            model = create_model(name, num_classes=10, **shared, **extra).to(device)
            sizes[name] = sum(p.numel() for p in model.parameters())
            steps[name] = _step_fn(model, x, y)
            steps[name]()  # warm-up (kernel builds, allocations)
        times: dict[str, list[float]] = {name: [] for name in steps}
        for _ in range(args.repeats):  # alternate, so load changes reach both
            for name, fn in steps.items():
                times[name].append(_timed(fn))
        ssm, rlif = (statistics.median(times[n]) for n in ("spiking_ssm", "recurrent_lif_seq"))
        rows.append([
            label, f"{sizes['spiking_ssm']:,}", f"{ssm * 1e3:.1f}",
            f"{sizes['recurrent_lif_seq']:,}", f"{rlif * 1e3:.1f}", fmt_ratio(rlif, ssm),
        ])  # fmt: skip
    print()
    print_table(
        ["case", "SSM params", "SSM ms/step", "RLIF params", "RLIF ms/step", "RLIF/SSM"], rows
    )


if __name__ == "__main__":
    main()
