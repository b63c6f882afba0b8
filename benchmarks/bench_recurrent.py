"""Recurrent spiking layers: spikeflow's ``layers.Recurrent`` against SpikingJelly,
snnTorch and plain PyTorch loops, side by side in one run.

The computation is one recurrent layer, ``S[t] = neuron(I[t] + V S[t-1])``, over input
currents ``I`` ``[T, B, H]`` (the feed-forward GEMM, the same for everyone, is left
out), forward and forward + backward (the spikes weighted by a fixed random tensor).

LIF layer (``tau = 2``, threshold 1, hard reset to 0, Sigmoid(alpha=4) surrogate):

- ``spikeflow``: ``layers.Recurrent(LIFNode(step_mode="s"), H)``.
- ``spikingjelly``: ``LinearRecurrentContainer(LIFNode(step_mode="s"), H, H)`` with
  its weight ``[1 | V]`` and no bias (its container always multiplies the input too).
- ``snntorch``: ``RLeaky(beta = 1 - 1/tau, threshold = tau, reset_mechanism="zero")``
  fed ``I`` (it integrates ``U = beta U + I + V S`` unscaled: ``U = tau H``), stepped in
  a loop. Timed, not checked: its reset differs (applied one step late, the zero reset
  also discards the input of the step after a spike), so its spikes are not the LIF's.
- ``plain torch``: the loop a user writes by hand (a custom autograd spike function).

adLIF layer (Bittar & Garner's RadLIF layer, the hidden layer of model ``rsnn``):
``spikeflow`` (``layers.Recurrent(AdLIFNode(H), H, self_connections=False)``) against
the authors' loop restated in plain PyTorch (per-step elementwise ops).

Before timing, the other runners' spikes (and input gradients) are checked equal to
spikeflow's in float64. Norse is left out: its recurrent LIF
is current-based (a synaptic current state), another neuron.

    python benchmarks/bench_recurrent.py                 # H in 128 512, T=100, B=32
    python benchmarks/bench_recurrent.py --hidden 256 --batch 128 --device cuda
    python benchmarks/bench_recurrent.py --hidden 128 --compile   # + torch.compile rows
"""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Callable

import torch
from _common import fmt_ms, fmt_ratio, measure, median, print_table
from _common import start as start_benchmark
from torch import Tensor, nn

from spikeflow import layers
from spikeflow.neurons import AdLIFNode, LIFNode
from spikeflow.surrogate import Rect

TAU = 2.0


class _SigmoidSpike(torch.autograd.Function):
    """Θ(z >= 0), backward Sigmoid(alpha=4): spikeflow's default surrogate."""

    @staticmethod
    def forward(ctx, z: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(z)
        return (z >= 0).to(z.dtype)

    @staticmethod
    def backward(ctx, g: Tensor) -> Tensor:  # type: ignore[override]
        (z,) = ctx.saved_tensors
        s = torch.sigmoid(4.0 * z)
        return g * 4.0 * s * (1.0 - s)


class _Boxcar(torch.autograd.Function):
    """Θ(z > 0), gradient 1 on |z| < 0.5: the adLIF authors' spike function."""

    @staticmethod
    def forward(ctx, z: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(z)
        return (z > 0).to(z.dtype)

    @staticmethod
    def backward(ctx, g: Tensor) -> Tensor:  # type: ignore[override]
        (z,) = ctx.saved_tensors
        return g * (z.abs() < 0.5).to(g.dtype)


Runner = Callable[[Tensor], Tensor]


def lif_runners(hidden: int, peers: bool) -> dict[str, Runner]:
    """One recurrent LIF layer per library, all with spikeflow's recurrent weight."""
    ours = layers.Recurrent(LIFNode(tau=TAU, step_mode="s"), hidden)
    weight = ours.recurrent.weight
    runners: dict[str, Runner] = {"spikeflow": ours}

    def plain(x: Tensor) -> Tensor:
        v = torch.zeros_like(x[0])
        s = torch.zeros_like(x[0])
        out = []
        for x_t in x:
            h = v + (x_t + s @ weight.T - v) / TAU
            s = _SigmoidSpike.apply(h - 1.0)
            v = h * (1.0 - s)
            out.append(s)
        return torch.stack(out)

    runners["plain torch"] = plain
    if peers and importlib.util.find_spec("spikingjelly") is not None:
        from spikingjelly.activation_based import functional as sj_functional
        from spikingjelly.activation_based import layer as sj_layer
        from spikingjelly.activation_based import neuron as sj_neuron

        sj = sj_layer.LinearRecurrentContainer(
            sj_neuron.LIFNode(tau=TAU, step_mode="s"), hidden, hidden, bias=False,
            step_mode="m",
        )  # fmt: skip
        with torch.no_grad():
            sj.rc.weight.copy_(torch.cat([torch.eye(hidden), weight], dim=1))

        def spikingjelly(x: Tensor, sj: nn.Module = sj) -> Tensor:
            sj_functional.reset_net(sj)
            return sj(x)

        runners["spikingjelly"] = spikingjelly
        runners["_sj_module"] = sj  # (moved with the others; not a runner)
    if peers and importlib.util.find_spec("snntorch") is not None:
        import snntorch

        rleaky = snntorch.RLeaky(beta=1.0 - 1.0 / TAU, linear_features=hidden,
                                 threshold=TAU, reset_mechanism="zero")  # fmt: skip
        with torch.no_grad():
            rleaky.recurrent.weight.copy_(weight)
            rleaky.recurrent.bias.zero_()

        def snn_torch(x: Tensor, rleaky: nn.Module = rleaky) -> Tensor:
            spk, mem = rleaky.init_rleaky()
            out = []
            for x_t in x:
                spk, mem = rleaky(x_t, spk, mem)
                out.append(spk)
            return torch.stack(out)

        runners["snntorch"] = snn_torch
        runners["_snntorch_module"] = rleaky
    return runners


def adlif_runners(hidden: int) -> dict[str, Runner]:
    """The RadLIF layer: spikeflow's against the authors' loop restated."""
    neuron = AdLIFNode(hidden, step_mode="s", strict_firing=True,
                       surrogate_function=Rect(alpha=1.0))  # fmt: skip
    ours = layers.Recurrent(neuron, hidden, self_connections=False)

    def authors_loop(x: Tensor) -> Tensor:
        ranges = {n: getattr(neuron, f"{n}_range") for n in ("alpha", "beta", "a", "b")}
        alpha, beta, a, b = (torch.clamp(getattr(neuron, n), *r) for n, r in ranges.items())
        weight = ours.feedback_weight()
        u = torch.zeros_like(x[0])
        w = torch.zeros_like(x[0])
        s = torch.zeros_like(x[0])
        out = []
        for x_t in x:
            w = beta * w + a * u + b * s
            u = alpha * (u - s) + (1 - alpha) * (x_t + s @ weight.T - w)
            s = _Boxcar.apply(u - 1.0)
            out.append(s)
        return torch.stack(out)

    return {"spikeflow": ours, "plain torch (authors' loop)": authors_loop}


def check(runners: dict[str, Runner], x: Tensor, gradients: set[str]) -> list[str]:
    """Spikes (and, for ``gradients``, input gradients) equal to spikeflow's."""
    notes = []
    g = torch.randn_like(x)
    results = {}
    for name, run in runners.items():
        xi = x.clone().requires_grad_()
        s = run(xi)
        (s * g).sum().backward()
        results[name] = (s.detach(), xi.grad)
    s0, g0 = results["spikeflow"]
    assert 0.02 < s0.mean() < 0.9, f"a degenerate check: firing rate {s0.mean():.3f}"
    for name, (s, grad) in results.items():
        if name == "spikeflow":
            continue
        if not torch.equal(s, s0):
            raise AssertionError(f"{name}: spikes differ from spikeflow's")
        what = "spikes"
        if name in gradients:
            torch.testing.assert_close(grad, g0, rtol=1e-9, atol=1e-10)
            what += " and input gradients"
        notes.append(f"{name}: {what} equal to spikeflow's ({str(x.dtype)[6:]})")
    return notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--T", type=int, default=100)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--budget", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also time spikeflow's layer and the plain loops under torch.compile "
        "(compiling unrolls the T steps: tens of seconds each, not timed)",
    )
    args = parser.parse_args()
    device, _ = start_benchmark(args.threads, args.device)
    peers = not args.no_peers

    # Correctness first, in float64 on the CPU (small sizes; the peers' fresh states
    # take the default dtype).
    torch.set_default_dtype(torch.float64)
    try:
        x = torch.rand(30, 4, 16) * 1.6
        lif = {k: v for k, v in lif_runners(16, peers).items() if not k.startswith("_")}
        checked = {k: v for k, v in lif.items() if k != "snntorch"}
        notes = check(checked, x, {"plain torch", "spikingjelly"})
        notes += check(adlif_runners(16), x * 2, {"plain torch (authors' loop)"})
    finally:
        torch.set_default_dtype(torch.float32)
    print("\nchecked: " + "; ".join(notes))

    for title, build in (("recurrent LIF layer", lambda h: lif_runners(h, peers)),
                         ("recurrent adLIF layer (RadLIF)", adlif_runners)):  # fmt: skip
        print(f"\n{title}: T={args.T}, batch {args.batch}; median ms, ratio = runner / spikeflow")
        rows = []
        for hidden in args.hidden:
            runners = build(hidden)
            for module in [r for r in runners.values() if isinstance(r, nn.Module)]:
                module.to(device)
            runners = {k: v for k, v in runners.items() if not k.startswith("_")}
            if args.compile:
                for name in [k for k in runners if k == "spikeflow" or k.startswith("plain")]:
                    runners[f"{name} compiled"] = torch.compile(runners[name])
            gen = torch.Generator().manual_seed(hidden)
            scale = 1.6 if title.startswith("recurrent LIF") else 3.2
            x = (torch.rand(args.T, args.batch, hidden, generator=gen) * scale).to(device)
            g = torch.randn(args.T, args.batch, hidden, generator=gen).to(device)
            times: dict[str, tuple[float, float]] = {}
            for name, run in runners.items():
                xi = x.clone().requires_grad_()

                def forward(run: Runner = run, x: Tensor = x) -> None:
                    with torch.no_grad():
                        run(x)

                def forward_backward(run: Runner = run, xi: Tensor = xi, g: Tensor = g) -> None:
                    (run(xi) * g).sum().backward()

                kw = {"repeats": args.repeats, "budget_s": args.budget}
                times[name] = (median(measure(forward, device, **kw)),
                               median(measure(forward_backward, device, **kw)))  # fmt: skip
            base = times["spikeflow"]
            for name, (fwd, fb) in times.items():
                rows.append([f"H={hidden} {name}", fmt_ms(fwd), fmt_ratio(fwd, base[0]),
                             fmt_ms(fb), fmt_ratio(fb, base[1])])  # fmt: skip
        print_table(["runner", "fwd ms", "ratio", "fwd+bwd ms", "ratio"], rows, indent="  ")


if __name__ == "__main__":
    main()
