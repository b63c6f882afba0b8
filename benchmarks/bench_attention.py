"""Spiking self-attention (Spikformer's SSA): spikeflow vs SpikingJelly, side by side.

Both layers get the same weights (SpikingJelly's fused q/k/v convolution and batch norm
split into spikeflow's three linear layers and norms) and the same spikes; the script
first checks that the outputs are equal, then times forward and forward+backward at the
sizes of the Spikformer papers' models: 64 tokens of 384 features in 12 heads
(Spikformer-4-384, CIFAR-10) and of 256 features in 16 heads (Spikformer-2-256, DVS),
T = 4, batch 16 and 64.

    python benchmarks/bench_attention.py            # ~1 min on 2 cores
    python benchmarks/bench_attention.py --threads 2 --repeats 5

SpikingJelly is a benchmark extra (benchmarks/README.md, "Installing the peers").
"""

from __future__ import annotations

import argparse
import statistics

import torch
from _common import measure, print_table
from _common import start as start_benchmark

from spikeflow.layers import SpikingSelfAttention


def _spikingjelly_ssa(dim: int, heads: int) -> tuple:
    from spikingjelly.activation_based import functional
    from spikingjelly.activation_based.layer.attention import SpikingSelfAttention as Peer

    layer = Peer(dim, heads)
    functional.set_step_mode(layer, "m")
    return layer, functional.reset_net


def _copy_weights(ours: SpikingSelfAttention, peer: torch.nn.Module) -> None:
    """SpikingJelly's fused [q; k; v] convolution and norm into spikeflow's three."""
    dim = ours.dim
    conv, norm = peer.qkv_conv_bn[0], peer.qkv_conv_bn[1]
    with torch.no_grad():
        for index, (linear, own_norm) in enumerate(zip(ours.qkv.linear, ours.qkv.norm,
                                                       strict=True)):  # fmt: skip
            rows = slice(index * dim, (index + 1) * dim)
            linear.weight.copy_(conv.weight[rows, :, 0])
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(own_norm, name).copy_(getattr(norm, name)[rows])
        ours.proj.weight.copy_(peer.proj_conv_bn[0].weight[:, :, 0])
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(ours.proj_norm, name).copy_(getattr(peer.proj_conv_bn[1], name))


def _time_both(ours, peer, reset, x, x_peer, device, repeats) -> list[str]:
    """Median ms of forward and forward+backward for both layers, with the ratios."""

    def peer_forward() -> torch.Tensor:
        reset(peer)  # a fresh sequence each call, as spikeflow's multi-step layers
        return peer(x_peer)

    cells = []
    for run_ours, run_peer in (
        (lambda: ours(x), peer_forward),
        (lambda: ours(x).sum().backward(), lambda: peer_forward().sum().backward()),
    ):
        ours_s = statistics.median(measure(run_ours, device, repeats=repeats))
        peer_s = statistics.median(measure(run_peer, device, repeats=repeats))
        cells += [f"{1e3 * ours_s:.1f}", f"{1e3 * peer_s:.1f}", f"{peer_s / ours_s:.2f}x"]
    return cells


def main(argv: list[str] | None = None) -> None:
    """Check equal outputs, then time both layers at the papers' sizes."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    device, _ = start_benchmark(args.threads, "cpu")
    rows = []
    for dim, heads in ((384, 12), (256, 16)):
        for batch in (16, 64):
            torch.manual_seed(0)
            ours = SpikingSelfAttention(dim, heads)
            peer, reset = _spikingjelly_ssa(dim, heads)
            _copy_weights(ours, peer)
            x = (torch.rand(4, batch, 64, dim) < 0.2).float()  # [T, B, N, D]
            x_peer = x.transpose(2, 3).contiguous()  # SpikingJelly's [T, B, D, N]
            ours.eval(), peer.eval()
            with torch.no_grad():
                reset(peer)
                same = torch.equal(ours(x), peer(x_peer).transpose(2, 3))
            if not same:
                raise SystemExit(f"outputs differ at D={dim}, B={batch}: not comparable")
            ours.train(), peer.train()
            x.requires_grad_(True)
            x_peer.requires_grad_(True)

            cells = _time_both(ours, peer, reset, x, x_peer, device, args.repeats)
            rows.append([f"D={dim}, H={heads}, B={batch}", *cells])
    print_table(["size (T=4, N=64)", "fwd ours ms", "fwd SJ ms", "SJ/ours",
                 "fwd+bwd ours ms", "fwd+bwd SJ ms", "SJ/ours"], rows)  # fmt: skip


if __name__ == "__main__":
    main()
