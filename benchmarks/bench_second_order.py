"""The cost of second-order gradients through the fused kernels
(``spikeflow.kernels.second_order``) against the reference loop (``backend="torch"``).

For LIF and PLIF on ``[T, N]`` float32 inputs (rate-coded, ``rand * 2``): the bytes per
neuron and step kept for backward by the forward, and by a ``create_graph=True``
backward until the second backward (``torch.autograd.graph.saved_tensors_hooks``,
distinct storages); the time of a second-order step (forward under the opt-in,
``create_graph`` backward of ``sum(mean_t(spikes)^2)``, a Hessian-vector product) and
of a first-order step (forward, backward). Time: the best of ``--repeat`` steps after
one, in ``--rounds`` rounds over the runners (interleaved, so that load from other
work falls on all of them alike); the median of the rounds.

    python benchmarks/bench_second_order.py --T 64 --N 10000 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from spikeflow.kernels import second_order
from spikeflow.neurons import LIFNode, ParametricLIFNode

NEURONS: dict[str, Callable[[str], nn.Module]] = {
    "LIF": lambda backend: LIFNode(tau=2.0, backend=backend),
    "PLIF": lambda backend: ParametricLIFNode(init_tau=2.0, backend=backend),
}


def saved_bytes(run: Callable[[], object]) -> tuple[object, int]:
    """``run()`` and the bytes of the distinct storages it saved for backward."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = run()
    return out, sum(storages.values())


def step(node: nn.Module, x: torch.Tensor, second: bool) -> tuple[int, int]:
    """One step; the bytes kept by the forward and by the create_graph backward."""
    x = x.detach().requires_grad_()
    with second_order():
        spikes, forward = saved_bytes(lambda: node(x))
    loss = (spikes.mean(0) ** 2).sum()  # type: ignore[union-attr]
    if not second:
        loss.backward()
        return forward, 0
    (g,), backward = saved_bytes(lambda: torch.autograd.grad(loss, x, create_graph=True))
    torch.autograd.grad((g * x.detach()).sum(), x)  # a Hessian-vector product
    return forward, backward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, default=64)
    parser.add_argument("--N", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.rand(args.T, args.N) * 2
    cells = [(n, b, s) for n in NEURONS for b in ("cpu", "torch") for s in (True, False)]
    times: dict[tuple[str, str, bool], list[float]] = {c: [] for c in cells}
    kept: dict[tuple[str, str], tuple[int, int]] = {}
    for _ in range(args.rounds):
        for name, backend, second in cells:
            node = NEURONS[name](backend)
            kept[name, backend] = step(node, x, True)
            best = float("inf")
            for _ in range(args.repeat):
                start = time.perf_counter()
                step(node, x, second)
                best = min(best, time.perf_counter() - start)
            times[name, backend, second].append(best * 1e3)
    per = args.T * args.N
    print(f"T={args.T} N={args.N} threads={args.threads} torch {torch.__version__}")
    print("neuron backend  fwd B/n/step  create_graph B/n/step  2nd-order ms  1st-order ms")
    for name in NEURONS:
        for backend in ("cpu", "torch"):
            fwd, bwd = kept[name, backend]
            second = statistics.median(times[name, backend, True])
            first = statistics.median(times[name, backend, False])
            print(f"{name:6} {backend:7} {fwd / per:12.2f} {bwd / per:22.2f} "
                  f"{second:13.1f} {first:13.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
