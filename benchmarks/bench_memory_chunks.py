"""Temporal chunks of recomputed blocks (``recompute_blocks(net, time_chunks=k)``): the
peak memory and time of a training step of the PLIF N-MNIST net as the windows of time
shrink, against plain BPTT and whole-call recomputation.

The network is ``plif_nmnist`` (two conv blocks of 128 channels at 34x34 and 17x17,
PLIF neurons, max pooling, two spiking dense layers) with its batch norms frozen
(``.eval()``: a batch norm in training mode normalises over all the steps, so a block
holding one cannot be chunked), dropout and neurons in training mode, on
``[T, B, 2, 34, 34]`` spikes (firing rate 0.2). One step: forward, the sum of the
output as the loss, backward. Memory: ``memory.step_peak_memory`` (the tensor storages
the step allocates, above what was held before it). Time: the median of ``--repeat``
steps after one, in ``--rounds`` rounds over the runners (interleaved, so that load
from other work falls on all of them alike); the median of the rounds. Each chunked
runner is first checked to give the plain network's output and input gradient
(float32; outputs bit for bit, gradients to rounding).

    python benchmarks/bench_memory_chunks.py --T 16 --batch 16 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from spikeflow.memory import recompute_blocks, step_peak_memory
from spikeflow.models import create_model


def _net() -> nn.Module:
    torch.manual_seed(0)
    net = create_model("plif_nmnist", in_channels=2)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    return net


def _loss(out: torch.Tensor) -> torch.Tensor:
    return out.sum()


def _grads(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.clone().requires_grad_()
    torch.manual_seed(1)  # the dropout draws
    out = net(x)
    _loss(out).backward()
    return out.detach(), x.grad


def _step_ms(net: nn.Module, x: torch.Tensor, repeat: int) -> float:
    times = []
    for k in range(repeat + 1):
        start = time.perf_counter()
        _loss(net(x)).backward()
        if k:
            times.append(1000 * (time.perf_counter() - start))
    net.zero_grad(set_to_none=True)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, default=16)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--chunks", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(args.T, args.batch, 2, 34, 34, generator=g) < 0.2).float()
    plain = _net()
    out, gx = _grads(plain, x)
    runners: list[tuple[str, nn.Module]] = [("BPTT", plain)]
    for chunks in [1, *args.chunks]:
        net = _net()
        recompute_blocks(net, time_chunks=chunks)
        out_c, gx_c = _grads(net, x)
        assert torch.equal(out, out_c), chunks
        torch.testing.assert_close(gx_c, gx, rtol=1e-4, atol=1e-7)
        runners.append((f"recompute_blocks, time_chunks={chunks}", net))
    print(f"plif_nmnist, T={args.T}, batch {args.batch}, threads {args.threads}")
    print("| runner | peak MB | vs BPTT | step ms | vs BPTT |")
    print("|---|---|---|---|---|")
    peaks = [step_peak_memory(net, x, _loss) / 2**20 for _, net in runners]
    rounds = [[_step_ms(net, x, args.repeat) for _, net in runners] for _ in range(args.rounds)]
    times = [statistics.median(column) for column in zip(*rounds)]
    base_peak, base_ms = peaks[0], times[0]
    for (name, _), peak, ms in zip(runners, peaks, times):
        print(f"| {name} | {peak:.0f} | {peak / base_peak:.2f}x | {ms:.0f} | {ms / base_ms:.2f}x |")


if __name__ == "__main__":
    main()
