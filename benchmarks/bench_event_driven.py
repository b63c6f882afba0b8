"""Event-driven backpropagation (methods.md 10): the fused C neuron vs the PyTorch loop.

No installed peer library implements event-driven backpropagation (the authors' code,
zhuyaoyu/SNN-event-driven-learning, needs CUDA to import). Its CPU path is a PyTorch
loop over T (``torch.jit.script``), which is what spikeflow's ``backend="torch"`` runs
(the same operations, the same order); ``backend="c"`` is spikeflow's fused C kernel.
The script checks that both give identical spikes and gradients, then times:

1. the neuron alone, forward and backward, at the two conv layers' sizes of the N-MNIST
   network (``[T, B, 12, 32, 32]`` and ``[T, B, 64, 12, 12]``);
2. whole training steps (forward, count loss, backward, AdamW step) of the zoo's
   ``event_driven_nmnist`` on N-MNIST-shaped frames ``[T=30, B=50, 2, 34, 34]`` (the
   authors' recipe).

    python benchmarks/bench_event_driven.py               # ~1 min on 2 cores
    python benchmarks/bench_event_driven.py --T 30 --batch 50 --steps 5 --threads 2
    python benchmarks/bench_event_driven.py --device cuda # Triton kernels vs the loop

On CUDA the fused backend is ``"triton"`` (spikeflow's Triton kernels) instead of ``"c"``.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from collections.abc import Callable

import torch
from _common import measure
from _common import start as start_benchmark

from spikeflow.event_driven import EventDrivenLayer, spike_backward, spike_forward
from spikeflow.losses import spike_count_loss
from spikeflow.models import create_model


def _median_ms(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median of ``repeats`` timed calls after one warm-up (``_common.measure``)."""
    return 1e3 * statistics.median(measure(fn, device, repeats=repeats))


def _set_backend(net: torch.nn.Module, backend: str) -> None:
    for module in net.modules():
        if isinstance(module, EventDrivenLayer):
            module.neuron = dataclasses.replace(module.neuron, backend=backend)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", type=int, default=30)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--steps", type=int, default=5, help="timed training steps per backend")
    ap.add_argument("--repeats", type=int, default=5, help="timed neuron calls per size")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = ap.parse_args()
    device, _ = start_benchmark(args.threads, args.device)
    fused = "triton" if device.type == "cuda" else "c"
    gen = torch.Generator().manual_seed(0)

    print(f"\nneuron alone (tau 8/4/3, exponential gradient), T={args.T}, batch {args.batch}")
    net = create_model("event_driven_nmnist")
    neuron = net.body[0].neuron
    for shape in ((12, 32, 32), (64, 12, 12)):
        current = (torch.randn(args.T, args.batch, *shape, generator=gen) * 0.5 + 0.1).to(device)
        noise = torch.randn(current.shape, generator=gen).to(device)
        ms: dict[str, float] = {}
        results = {}
        for backend in ("torch", fused):
            chosen = dataclasses.replace(neuron, backend=backend)
            out = spike_forward(current, chosen)
            grad = noise * out[0]
            results[backend] = (*out, *spike_backward(grad, *out, chosen))
            ms[f"{backend} fwd"] = _median_ms(
                lambda c=chosen, x=current: spike_forward(x, c), device, args.repeats
            )
            ms[f"{backend} bwd"] = _median_ms(
                lambda c=chosen, o=out, g=grad: spike_backward(g, *o, c), device, args.repeats
            )
        same = all(torch.equal(a, b) for a, b in zip(results["torch"], results[fused]))
        f_fwd, f_bwd = ms[f"{fused} fwd"], ms[f"{fused} bwd"]
        print(f"  {list(current.shape)}: identical results {same}; forward torch "
              f"{ms['torch fwd']:.1f} ms, {fused} {f_fwd:.1f} ms "
              f"({ms['torch fwd'] / f_fwd:.1f}x); backward torch {ms['torch bwd']:.1f} ms, "
              f"{fused} {f_bwd:.1f} ms ({ms['torch bwd'] / f_bwd:.1f}x)")  # fmt: skip
        if not same:
            raise SystemExit("the two backends differ")

    print(f"\ntraining steps of event_driven_nmnist, T={args.T}, batch {args.batch}, "
          f"{args.steps} timed steps after one warm-up")  # fmt: skip
    events = torch.rand(args.T, args.batch, 2, 34, 34, generator=gen)
    x = torch.poisson(events * (events > 0.9) * 3, generator=gen).to(device)
    y = torch.randint(0, 10, (args.batch,), generator=gen).to(device)
    net = net.to(device)
    net(x, target=y)  # calibrates
    state = net.state_dict()
    step_ms: dict[str, float] = {}
    grads = {}
    for backend in ("torch", fused):
        model = create_model("event_driven_nmnist").to(device)
        model.load_state_dict(state)
        _set_backend(model, backend)
        opt = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.2)

        def step(m: torch.nn.Module = model, o: torch.optim.Optimizer = opt) -> None:
            loss = spike_count_loss(m(x, target=y), y, 15.0, 2.0)
            o.zero_grad()
            loss.backward()
            o.step()

        first = create_model("event_driven_nmnist").to(device)
        first.load_state_dict(state)
        _set_backend(first, backend)
        spike_count_loss(first(x, target=y), y, 15.0, 2.0).backward()
        grads[backend] = [p.grad for p in first.parameters()]
        step_ms[backend] = _median_ms(step, device, args.steps)
        print(f"  {backend:>5}: median step {step_ms[backend]:.0f} ms "
              f"({1e3 * args.batch / step_ms[backend]:.1f} samples/s)")  # fmt: skip
    same = all(torch.equal(a, b) for a, b in zip(grads["torch"], grads[fused]))
    ratio = step_ms["torch"] / step_ms[fused]
    print(f"  identical first-step gradients: {same}; "
          f"ratio {fused} / torch throughput: {ratio:.2f}x")  # fmt: skip
    if not same:
        raise SystemExit("the two backends differ")


if __name__ == "__main__":
    main()
