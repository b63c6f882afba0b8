"""Online training (SLTT, SLTT-K, OTTT) vs BPTT: time per training step and memory,
spikeflow and SpikingJelly side by side in one run.

The network is a DVS-sized convolutional SNN on ``[T, B, 2, 48, 48]`` frames (the
input size of the SLTT paper's CIFAR10-DVS runs): {conv3x3-BN-LIF-MaxPool2} with 64,
128, 128 channels, then a linear read-out giving per-step logits; LIF with the SLTT
authors' settings (tau = 1.1, no input decay, soft reset). One training step is the
per-step cross-entropy (mean over steps), its backward pass and an SGD step.

Runners (each with the same weights):

- ``spikeflow bptt``: the whole sequence in one multi-step call, one backward pass.
- ``spikeflow sltt``: ``spikeflow.training.online.online_backward`` (one step per call,
  one backward per step, the state detached in between).
- ``spikeflow sltt-k``: the same, backpropagating ``--k`` random steps.
- ``spikeflow ottt``: ``online_backward(..., trace_decay=1 - 1/tau)`` (OTTT: the weights
  learn from presynaptic traces).
- ``spikingjelly bptt``: SpikingJelly 2.0's multi-step layers and ``LIFNode``.
- ``spikingjelly sltt``: its ``SLTTLIFNode`` in single-step mode stepped in a Python
  loop with a backward per step, the SLTT authors' training loop.
- ``spikingjelly ottt``: its ``OTTTLIFNode`` in an ``OTTTSequential``, stepped the same
  way. Its gradients differ from spikeflow's OTTT by design (it pools the traces with
  the spikes and does not trace the input), so only the outputs are checked equal.

Memory is the peak of what autograd holds saved for backward passes
(``spikeflow.training.online.peak_saved_bytes``; on CUDA also
``torch.cuda.max_memory_allocated``). Before timing, the SLTT runners of both libraries
are checked to give equal outputs and gradients.

    python benchmarks/bench_online.py                      # T in 6 10 20, batch 16
    python benchmarks/bench_online.py --T 10 --batch 32 --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from _common import start as start_benchmark
from torch import Tensor, nn

from spikeflow import layers, neurons
from spikeflow.training.online import online_backward, peak_saved_bytes

LIF = {"tau": 1.1, "decay_input": False, "v_reset": None}


def spikeflow_net() -> nn.Module:
    blocks: list[nn.Module] = []
    for c_in, c_out in ((2, 64), (64, 128), (128, 128)):
        blocks += [layers.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                   layers.BatchNorm2d(c_out), neurons.LIFNode(**LIF),
                   layers.MaxPool2d(2)]  # fmt: skip
    return nn.Sequential(*blocks, layers.Flatten(), layers.Linear(128 * 6 * 6, 10))


def spikingjelly_net(step_mode: str, kind: str) -> nn.Module:
    """``kind``: "lif" (BPTT), "sltt" or "ottt"."""
    from spikingjelly.activation_based import functional, layer, neuron

    node_class = {"lif": neuron.LIFNode, "sltt": neuron.SLTTLIFNode, "ottt": neuron.OTTTLIFNode}
    blocks: list[nn.Module] = []
    for c_in, c_out in ((2, 64), (64, 128), (128, 128)):
        node = node_class[kind](tau=1.1, decay_input=False, v_reset=None)
        blocks += [layer.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                   layer.BatchNorm2d(c_out), node, layer.MaxPool2d(2)]  # fmt: skip
    container = layer.OTTTSequential if kind == "ottt" else nn.Sequential
    net = container(*blocks, layer.Flatten(), layer.Linear(128 * 6 * 6, 10))
    functional.set_step_mode(net, step_mode)
    return net


def per_step_ce(out: Tensor, y: Tensor) -> Tensor:
    """The mean over steps of the cross-entropy of each step's logits ``[T, B, K]``."""
    return nn.functional.cross_entropy(out.flatten(0, 1), y.repeat(out.shape[0]))


def spikingjelly_sltt_step(net: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    from spikingjelly.activation_based import functional

    outs = []
    for t in range(x.shape[0]):
        out = net(x[t])
        (nn.functional.cross_entropy(out, y) / x.shape[0]).backward()
        outs.append(out.detach())
    functional.reset_net(net)
    return torch.stack(outs)


def spikingjelly_bptt_step(net: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    from spikingjelly.activation_based import functional

    out = net(x)
    per_step_ce(out, y).backward()
    functional.reset_net(net)
    return out.detach()


def build_runners(k: int, with_peers: bool) -> dict[str, tuple[nn.Module, Callable]]:
    torch.manual_seed(0)
    ours = spikeflow_net()
    state = ours.state_dict()
    runners: dict[str, tuple[nn.Module, Callable]] = {}

    def clone() -> nn.Module:
        net = spikeflow_net()
        net.load_state_dict(state)
        return net

    def bptt(net, x, y):
        out = net(x)
        per_step_ce(out, y).backward()
        return out.detach()

    generator = torch.Generator().manual_seed(0)
    runners["spikeflow bptt"] = (clone(), bptt)
    runners["spikeflow sltt"] = (
        clone(),
        lambda net, x, y: online_backward(net, x, y, per_step_ce).output,
    )
    runners[f"spikeflow sltt-k (k={k})"] = (
        clone(),
        lambda net, x, y: (
            online_backward(net, x, y, per_step_ce, train_steps=k, generator=generator).output
        ),
    )
    runners["spikeflow ottt"] = (
        clone(),
        lambda net, x, y: (
            online_backward(net, x, y, per_step_ce, trace_decay=1 - 1 / LIF["tau"]).output
        ),
    )
    if with_peers:
        for name, mode, kind, step in (
            ("spikingjelly bptt", "m", "lif", spikingjelly_bptt_step),
            ("spikingjelly sltt", "s", "sltt", spikingjelly_sltt_step),
            ("spikingjelly ottt", "s", "ottt", spikingjelly_sltt_step),
        ):
            net = spikingjelly_net(mode, kind)
            net.load_state_dict(state)
            runners[name] = (net, step)
    return runners


def check(runners, device: torch.device) -> None:
    """The two libraries' SLTT (and BPTT) runners: equal outputs and gradients."""
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(4, 4, 2, 48, 48, generator=g) < 0.3).float().to(device)
    y = torch.randint(0, 10, (4,), generator=g).to(device)
    for ours, theirs in (("spikeflow sltt", "spikingjelly sltt"),
                         ("spikeflow bptt", "spikingjelly bptt"),
                         ("spikeflow ottt", "spikingjelly ottt")):  # fmt: skip
        if theirs not in runners:
            continue
        results = []
        for name in (ours, theirs):
            net, step = runners[name]
            net.zero_grad(set_to_none=True)
            out = step(net, x, y)
            results.append((out, [p.grad.clone() for p in net.parameters()]))
            net.zero_grad(set_to_none=True)
        (a, ga), (b, gb) = results
        worst = max(float((p - q).abs().max() / (q.abs().max() + 1e-12)) for p, q in zip(ga, gb))
        same = torch.allclose(a, b, rtol=1e-4, atol=1e-5)
        print(f"check {ours} vs {theirs}: outputs {'equal' if same else 'DIFFER'}, "
              f"largest relative gradient difference {worst:.1e}")  # fmt: skip
        if not same or (worst > 1e-3 and "ottt" not in ours):  # OTTT: outputs only
            raise SystemExit("the runners do not compute the same thing")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--T", type=int, nargs="+", default=[6, 10, 20])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--k", type=int, default=2, help="steps SLTT-K backpropagates")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-peers", action="store_true")
    args = parser.parse_args()
    device, _ = start_benchmark(args.threads, args.device)
    runners = build_runners(args.k, not args.no_peers)
    for net, _ in runners.values():
        net.to(device).train()
    check(runners, device)
    cuda = device.type == "cuda"
    print(f"\nbatch {args.batch}, SGD step; median of {args.repeats} steps after one warm-up")
    print(f"{'T':>4}  {'runner':<26} {'ms/step':>9} {'vs sltt':>8} {'saved MB':>9}"
          + (f" {'peak MB':>8}" if cuda else ""))  # fmt: skip
    for T in args.T:
        g = torch.Generator().manual_seed(T)
        x = (torch.rand(T, args.batch, 2, 48, 48, generator=g) < 0.3).float().to(device)
        y = torch.randint(0, 10, (args.batch,), generator=g).to(device)
        rows = []
        for name, (net, step) in runners.items():
            optimizer = torch.optim.SGD(net.parameters(), lr=1e-3)

            def train_step(net=net, step=step, optimizer=optimizer, x=x, y=y) -> None:
                optimizer.zero_grad(set_to_none=True)
                step(net, x, y)
                optimizer.step()

            train_step()  # warm-up (spikeflow's C kernels compile on a first call)
            _, saved = peak_saved_bytes(train_step)
            peak = None
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                train_step()
                torch.cuda.synchronize()
                peak = torch.cuda.max_memory_allocated() / 2**20
            times = []
            for _ in range(args.repeats):
                if cuda:
                    torch.cuda.synchronize()
                start = time.perf_counter()
                train_step()
                if cuda:
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - start)
            rows.append((name, statistics.median(times) * 1e3, saved / 2**20, peak))
        reference = next(r[1] for r in rows if r[0] == "spikeflow sltt")
        for name, ms, saved_mb, peak in rows:
            line = f"{T:>4}  {name:<26} {ms:>9.1f} {ms / reference:>7.2f}x {saved_mb:>9.1f}"
            print(line + (f" {peak:>8.1f}" if peak is not None else ""))


if __name__ == "__main__":
    main()
