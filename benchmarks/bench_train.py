"""Training throughput of the PLIF N-MNIST network: spikeflow vs SpikingJelly, one run.

The network is the zoo's ``plif_nmnist`` (methods.md 11.2): {conv3x3(128)-BN-PLIF-
MaxPool2} x2, Dropout(0.5)-FC(8192 -> 2048)-PLIF-Dropout(0.5)-FC(2048 -> 100)-PLIF-
voting, PLIF with tau_0 = 2, detach_reset, ATan. SpikingJelly gets the same
architecture from ``spikingjelly.activation_based`` (``layer.*`` and
``neuron.ParametricLIFNode`` in multi-step mode, torch backend) and the same weights.
One training step is forward, the rate MSE loss, backward and an Adam step on a batch
of N-MNIST-shaped frames ``[T=10, B=16, 2, 34, 34]`` (counts of a sparse random event
stream: every layer is dense, so the values do not change the time). Before timing,
both conv stacks are checked to give identical spikes on the same input (training mode).

    python benchmarks/bench_train.py                 # ~20 s on 2 idle cores
    python benchmarks/bench_train.py --steps 10 --batch 16 --T 10 --threads 2
    python benchmarks/bench_train.py --compile       # + each network under torch.compile

With ``--compile`` the networks also run compiled (``torch.compile(net)``; loss, backward
and optimizer step as before): spikeflow with ``backend="auto"`` (on CPU its C kernels,
as custom operators inside the compiled graph; on CUDA the reference loop) and with
``backend="torch"`` (the reference loop, fused by inductor), and SpikingJelly. The
warm-up steps, which compile, are timed and printed apart.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from _common import start as start_benchmark
from torch import nn

from spikeflow.losses import rate_mse_loss
from spikeflow.models import create_model


def spikingjelly_plif_nmnist(channels: int = 128) -> nn.Module:
    """The same network from SpikingJelly's layers (multi-step mode)."""
    from spikingjelly.activation_based import functional, layer, neuron, surrogate

    def plif() -> nn.Module:
        return neuron.ParametricLIFNode(init_tau=2.0, detach_reset=True,
                                        surrogate_function=surrogate.ATan())  # fmt: skip

    net = nn.Sequential(
        layer.Conv2d(2, channels, 3, padding=1, bias=False), layer.BatchNorm2d(channels),
        plif(), layer.MaxPool2d(2, 2),
        layer.Conv2d(channels, channels, 3, padding=1, bias=False), layer.BatchNorm2d(channels),
        plif(), layer.MaxPool2d(2, 2),
        layer.Flatten(), layer.Dropout(0.5),
        layer.Linear(channels * 8 * 8, channels * 8 * 8 // 4, bias=False), plif(),
        layer.Dropout(0.5), layer.Linear(channels * 8 * 8 // 4, 100, bias=False), plif(),
        layer.VotingLayer(10),
    )  # fmt: skip
    functional.set_step_mode(net, "m")
    return net


def copy_weights(source: nn.Module, target: nn.Module) -> None:
    """Copy parameters and buffers in module order (both nets list them alike)."""
    src, dst = list(source.state_dict().values()), target.state_dict()
    if len(src) != len(dst):
        raise SystemExit(f"state dicts differ: {len(src)} vs {len(dst)} entries")
    target.load_state_dict({key: value.clone() for key, value in zip(dst, src)})


def make_step(
    net: nn.Module, reset: Callable[[], None] | None
) -> Callable[[torch.Tensor, torch.Tensor], None]:
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        out = net(x)
        loss = rate_mse_loss(out, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if reset is not None:
            reset()

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", type=int, default=10)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=8, help="timed steps per library")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--compile", action="store_true", help="also time compiled networks")
    args = ap.parse_args()
    device, _ = start_benchmark(args.threads, args.device)
    print(f"PLIF N-MNIST network, T={args.T}, batch {args.batch}, "
          f"{args.steps} timed steps after {args.warmup} warm-up steps")  # fmt: skip

    sf_net = create_model("plif_nmnist").to(device)
    nets: dict[str, tuple[nn.Module, Callable[[], None] | None]] = {"spikeflow": (sf_net, None)}
    try:
        from spikingjelly.activation_based import functional as sj_functional

        sj_net = spikingjelly_plif_nmnist().to(device)
        copy_weights(sf_net, sj_net)
        nets["spikingjelly"] = (sj_net, lambda: sj_functional.reset_net(sj_net))
    except ImportError as exc:
        print(f"spikingjelly unavailable: {exc}")

    gen = torch.Generator().manual_seed(0)
    events = torch.rand(args.T, args.batch, 2, 34, 34, generator=gen)
    x = torch.poisson(events * (events > 0.9) * 3, generator=gen).to(device)
    y = torch.randint(0, 10, (args.batch,), generator=gen).to(device)

    # correctness: the conv stack (everything before the first dropout) gives the same
    # spikes from the same weights in training mode (batch statistics)
    if "spikingjelly" in nets:
        with torch.no_grad():
            sf_spikes = sf_net.conv(x)
            sj_spikes = nets["spikingjelly"][0][:8](x)
            nets["spikingjelly"][1]()  # type: ignore[misc]
        diff = (sf_spikes - sj_spikes).abs().max().item()
        print(f"check: conv-stack spikes, max |spikeflow - spikingjelly| = {diff:.3g} "
              f"(firing rate {sf_spikes.mean().item():.3f})")  # fmt: skip
        if diff > 0:
            raise SystemExit("the two networks compute different spikes")

    if args.compile:
        from spikeflow.neurons import BaseNode

        for backend in ("auto", "torch"):
            net = create_model("plif_nmnist").to(device)
            net.load_state_dict(sf_net.state_dict())
            for m in net.modules():
                if isinstance(m, BaseNode):
                    m.backend = backend
            nets[f"spikeflow[{backend}] compiled"] = (torch.compile(net), None)
        if "spikingjelly" in nets:
            sj_net, sj_reset = nets["spikingjelly"]
            nets["spikingjelly compiled"] = (torch.compile(sj_net), sj_reset)

    results: dict[str, float] = {}
    for name, (net, reset) in nets.items():
        step = make_step(net, reset)
        start = time.perf_counter()
        try:
            for _ in range(args.warmup):
                step(x, y)
        except Exception as error:  # a compiled network that fails: reported, not timed
            print(f"{name:>13}: failed: {type(error).__name__}: {str(error).splitlines()[0]}")
            continue
        if name.endswith("compiled"):
            print(f"{name:>13}: {args.warmup} warm-up steps (compiling) "
                  f"{time.perf_counter() - start:.1f} s")  # fmt: skip
        if device.type == "cuda":
            torch.cuda.synchronize()
        times = []
        for _ in range(args.steps):
            start = time.perf_counter()
            step(x, y)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        med = statistics.median(times)
        results[name] = args.batch / med
        print(f"{name:>13}: median step {1e3 * med:8.1f} ms (min {1e3 * min(times):.1f}, max "
              f"{1e3 * max(times):.1f})  ->  {results[name]:7.1f} samples/s")  # fmt: skip
    if "spikeflow" in results and "spikingjelly" in results:
        print(
            f"ratio spikeflow / spikingjelly throughput: "
            f"{results['spikeflow'] / results['spikingjelly']:.2f}x"
        )


if __name__ == "__main__":
    main()
