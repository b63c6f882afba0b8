"""Regression at every time step: a spiking network's output membrane follows a trajectory.

The port of snnTorch's tutorial_regression_1 ("Regression with SNNs: Part I"): two
layers of snnTorch-style leaky neurons (``neurons.LeakyNode``, a random decay and
threshold per neuron, the decays learned, the fast-sigmoid surrogate) and an output
leaky integrator without reset whose membrane, read at every step, is trained by MSE to
follow the target of ``data.datasets.trajectory.Trajectories`` (a ramp in, ``sqrt(s·x)``
out). Prints the loss curve, the final MSE and the relative L1 error; with
``--compare-snntorch`` trains the tutorial's snnTorch network from the same initial
weights side by side and prints both times. ``--plot FILE`` saves the curves
(matplotlib).

    python examples/regression_trajectory.py --steps 100 --compare-snntorch

The tutorial's network passes its second layer through the output neuron (``self.li_out``
where ``self.lif_hidden`` was meant); both networks here use the hidden layer's own neurons.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch
from torch import Tensor, nn

from spikeflow.data.datasets.trajectory import Trajectories
from spikeflow.neurons import LeakyNode
from spikeflow.surrogate import FastSigmoid


class TrajectoryNet(nn.Module):
    """Linear → Leaky → Linear → Leaky → Linear → leaky integrator (no reset); the output
    is the integrator's membrane at every step, ``[T, B, 1]`` for an input ``[T, B, 1]``.

    Args:
        hidden: neurons per hidden layer.
        decays: ``(beta_in, threshold_in, beta_hidden, threshold_hidden, beta_out)``,
            the tutorial's random initial values (default: drawn with ``torch.rand``
            in the tutorial's order, each layer's decay and threshold before its
            ``Linear``, so that after the same ``torch.manual_seed`` the network starts
            from the tutorial's weights).
    """

    def __init__(self, hidden: int = 128, decays: tuple[Tensor, ...] | None = None) -> None:
        super().__init__()
        given = None if decays is None else [d.clone() for d in decays]

        def draw(n: int) -> Tensor:  # the next given value, or the tutorial's draw
            return given.pop(0) if given is not None else torch.rand(n)

        beta_in, thr_in = draw(hidden), draw(hidden)
        self.fc_in = nn.Linear(1, hidden)
        self.lif_in = LeakyNode(beta_in, thr_in, learn_beta=True, surrogate_function=FastSigmoid())
        beta_hidden, thr_hidden = draw(hidden), draw(hidden)
        self.fc_hidden = nn.Linear(hidden, hidden)
        self.lif_hidden = LeakyNode(
            beta_hidden, thr_hidden, learn_beta=True, surrogate_function=FastSigmoid()
        )
        beta_out = draw(1)
        self.fc_out = nn.Linear(hidden, 1)
        self.li_out = LeakyNode(beta_out, 1.0, reset_mechanism="none", learn_beta=True,
                                surrogate_function=FastSigmoid(), store_v_seq=True)  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        """The output membrane at every step of the time-major input ``x``."""
        spikes = self.lif_hidden(self.fc_hidden(self.lif_in(self.fc_in(x))))
        self.li_out(self.fc_out(spikes))
        return self.li_out.v_seq


def snntorch_net(net: TrajectoryNet) -> nn.Module:
    """The tutorial's snnTorch network (its hidden layer's own neurons) with ``net``'s
    current weights, decays and thresholds, in ``net``'s dtype."""
    import snntorch as snn
    from snntorch import surrogate

    class Tutorial(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            grad = surrogate.fast_sigmoid()
            for name in ("fc_in", "fc_hidden", "fc_out"):
                setattr(self, name, _copy_linear(getattr(net, name)))
            self.lif_in = snn.Leaky(beta=net.lif_in.beta.detach().clone(), learn_beta=True,
                                    threshold=net.lif_in.v_threshold.detach().clone(),
                                    spike_grad=grad)  # fmt: skip
            self.lif_hidden = snn.Leaky(beta=net.lif_hidden.beta.detach().clone(),
                                        threshold=net.lif_hidden.v_threshold.detach().clone(),
                                        learn_beta=True, spike_grad=grad)  # fmt: skip
            self.li_out = snn.Leaky(beta=net.li_out.beta.detach().clone(), threshold=1.0,
                                    learn_beta=True, spike_grad=grad,
                                    reset_mechanism="none")  # fmt: skip

        def forward(self, x: Tensor) -> Tensor:
            mem_1 = self.lif_in.init_leaky()
            mem_2 = self.lif_hidden.init_leaky()
            mem_3 = self.li_out.init_leaky()
            record = []
            for x_t in x:  # (snnTorch's spikes are float32 whatever the dtype: cast back)
                spk_1, mem_1 = self.lif_in(self.fc_in(x_t), mem_1)
                spk_2, mem_2 = self.lif_hidden(self.fc_hidden(spk_1.to(x.dtype)), mem_2)
                _, mem_3 = self.li_out(self.fc_out(spk_2.to(x.dtype)), mem_3)
                record.append(mem_3)
            return torch.stack(record)

    dtype = net.fc_in.weight.dtype
    return Tutorial().to(dtype)


def _copy_linear(layer: nn.Linear) -> nn.Linear:
    copy = nn.Linear(layer.in_features, layer.out_features, dtype=layer.weight.dtype)
    copy.load_state_dict(layer.state_dict())
    return copy


def train(model: nn.Module, x: Tensor, y: Tensor, steps: int, lr: float) -> dict[str, Any]:
    """``steps`` Adam steps of MSE between ``model(x)`` and ``y`` (whole batch each step);
    returns the loss at each step, the final MSE and relative L1 error, and the time."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    start = time.perf_counter()
    for _ in range(steps):
        loss = nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    seconds = time.perf_counter() - start
    with torch.no_grad():
        out = model(x)
        mse = nn.functional.mse_loss(out, y).item()
        relative_l1 = ((out - y).abs().sum() / y.abs().sum()).item()
    return {"losses": losses, "mse": mse, "relative_l1": relative_l1, "seconds": seconds}


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Train (and compare); returns each library's results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="Adam steps (the tutorial's 100)")
    parser.add_argument("--T", type=int, default=50)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--samples", type=int, default=1, help="trajectories (the tutorial's 1)")
    parser.add_argument("--mode", choices=("linear", "sqrt"), default="sqrt")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compare-snntorch", action="store_true")
    parser.add_argument("--plot", default=None, help="save the loss curve and output here")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    data = Trajectories(args.samples, T=args.T, mode=args.mode)
    x, y = data.inputs.transpose(0, 1), data.targets.transpose(0, 1)  # [T, B, 1]
    net = TrajectoryNet(args.hidden)
    models = {"spikeflow": net}
    if args.compare_snntorch:
        models["snntorch"] = snntorch_net(net)  # the same initial weights
    results = {}
    for name, model in models.items():
        results[name] = result = train(model, x, y, args.steps, args.lr)
        curve = "  ".join(f"{loss:.4f}" for loss in result["losses"][:: max(1, args.steps // 10)])
        print(f"{name}: loss every {max(1, args.steps // 10)} steps: {curve}")
        print(f"{name}: {args.steps} Adam steps in {result['seconds']:.2f} s; final MSE "
              f"{result['mse']:.5f}, relative L1 error {result['relative_l1']:.4f}")  # fmt: skip
    if args.plot:
        _plot(args.plot, results, net, x, y)
    return results


def _plot(path: str, results: dict[str, dict[str, Any]], net: nn.Module, x: Tensor, y: Tensor):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (curves, output) = plt.subplots(1, 2, figsize=(9, 3.5))
    for name, result in results.items():
        curves.semilogy(result["losses"], label=name)
    curves.set(xlabel="Adam step", ylabel="MSE", title="loss")
    curves.legend()
    with torch.no_grad():
        output.plot(net(x)[:, 0, 0], label="output membrane")
    output.plot(y[:, 0, 0], "--", label="target")
    output.set(xlabel="step", title="trajectory (sample 0)")
    output.legend()
    figure.tight_layout()
    figure.savefig(path)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
