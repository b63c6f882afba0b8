"""End-to-end CPU training steps: spikeflow (its Trainer and a plain loop) vs SpikingJelly,
snnTorch and Norse, data loading included.

``bench_train.py`` times the network alone on synthetic frames; this script times what a
researcher waits for: each step fetches its batch from the DataLoader, makes it
time-major, runs forward, loss, backward and the optimizer step (and, for spikeflow's
``Trainer``, its bookkeeping: RNG capture, monitors, running sums).

(a) The README's default job, ``spikeflow train``: ``plif_digits`` on the 8x8 digits,
    T = 4, batch 32, rate-MSE loss, Adam 1e-3.
(b) The zoo's ``plif_nmnist`` conv net (``--channels``, default 32; 128 is the paper's)
    on real N-MNIST frames (``../shared/data/nmnist-small``, T = 10 by event count, batch
    16), read from spikeflow's frame cache; and first the data pipeline alone: one pass of
    a DataLoader over the 1,000 training files with spikeflow's ``NMNIST`` (uncached, and
    from its disk cache), Tonic's ``read_mnist_file`` + ``ToFrame`` and SpikingJelly's
    ``load_ATIS_bin`` + ``integrate_events_by_fixed_frames_number``.

Every peer gets the same architecture with the same weights: stateless layers run on
``[T*B, ...]`` (as spikeflow folds time), dropout masks shared over time, neurons over
the whole sequence (SpikingJelly, multi-step, torch backend) or stepped over T in a
Python loop (snnTorch ``Leaky`` with ``U = tau H``, threshold ``tau``, learnable beta;
Norse ``LIFBoxCell`` with a learnable ``tau_mem_inv``). Before timing, every network's
output at init is compared with spikeflow's (eval mode, float64). Timing: ``--rounds``
rounds, each runs every runner in turn for ``--warmup`` + ``--steps`` steps; the median
step of each round, then the median over rounds; ``--clock cpu`` times each step in
this process's CPU time instead of wall time (on a machine shared with other jobs).

    python benchmarks/bench_end_to_end.py --threads 1                  # ~3 min on 2 cores
    python benchmarks/bench_end_to_end.py --jobs nmnist --channels 128 --steps 6
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import itertools
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from _common import start as start_benchmark
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from spikeflow import layers
from spikeflow.losses import rate_mse_loss
from spikeflow.neurons import BaseNode
from spikeflow.training.build import build_model
from spikeflow.training.config import TrainConfig, resolve
from spikeflow.training.data import build_datasets
from spikeflow.training.trainer import Trainer

NMNIST_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "nmnist-small"
#: The clock of the step times (``--clock``): wall time, or this process's CPU time
#: (with one torch thread, what the step computed, without the time other jobs on a
#: shared machine held the CPU; still slowed by their use of the caches).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]
StepFn = Callable[[], None]

# -- the same network in each library ----------------------------------------------------


def _units(net: nn.Module) -> Iterator[nn.Module]:
    """The network's layers in call order: neurons and leaf layers."""
    for child in net.children():
        if isinstance(child, (BaseNode, layers.VotingLayer)) or not list(child.children()):
            yield child
        else:
            yield from _units(child)


def _torch_layer(unit: nn.Module) -> nn.Module:
    """The stateless torch layer of a spikeflow sequence layer, with its weights."""
    if isinstance(unit, layers.Conv2d):
        out = nn.Conv2d(unit.in_channels, unit.out_channels, unit.kernel_size, unit.stride,
                        unit.padding, bias=unit.bias is not None)  # fmt: skip
    elif isinstance(unit, layers.BatchNorm2d):
        out = nn.BatchNorm2d(unit.num_features, unit.eps, unit.momentum)
    elif isinstance(unit, layers.MaxPool2d):
        out = nn.MaxPool2d(unit.kernel_size, unit.stride)
    elif isinstance(unit, layers.Flatten):
        return nn.Flatten()
    elif isinstance(unit, layers.Linear):
        out = nn.Linear(unit.in_features, unit.out_features, bias=unit.bias is not None)
    else:
        raise SystemExit(f"no peer layer for {type(unit).__name__}")
    out.load_state_dict(unit.state_dict())
    return out


class Folded(nn.Module):
    """A stateless layer over ``[T, B, ...]`` with T folded into the batch."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: Tensor) -> Tensor:
        y = self.layer(x.flatten(0, 1))
        return y.view(x.shape[0], x.shape[1], *y.shape[1:])


class SharedDropout(nn.Module):
    """Dropout with one mask per sequence (spikeflow's and SpikingJelly's)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        mask = torch.empty_like(x[0]).bernoulli_(1 - self.p) / (1 - self.p)
        return x * mask


class Voting(nn.Module):
    """Mean of each class's group of neurons: ``[T, B, K * v]`` -> ``[T, B, K]``."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: Tensor) -> Tensor:
        return x.view(*x.shape[:-1], -1, self.size).mean(-1)


class SnnTorchPLIF(nn.Module):
    """snnTorch ``Leaky`` stepped over T: ``U = beta U + X`` is ``tau H`` of the PLIF
    (beta = 1 - 1/tau, threshold tau), ATan slope 1 on U (alpha 2 on H); its reset is
    always detached, as the PLIF's here; beta is learned directly (PLIF: sigmoid(w))."""

    def __init__(self, tau: float) -> None:
        super().__init__()
        import snntorch
        from snntorch import surrogate

        self.lif = snntorch.Leaky(beta=1 - 1 / tau, threshold=tau, learn_beta=True,
                                  spike_grad=surrogate.atan(alpha=1.0),
                                  reset_mechanism="zero")  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        mem = self.lif.init_leaky()
        spikes = []
        for x_t in x.unbind(0):
            spk, mem = self.lif(x_t, mem)
            spikes.append(spk)
        return torch.stack(spikes).to(x.dtype)  # (its spikes are float32 for any input)


class NorsePLIF(nn.Module):
    """Norse ``LIFBoxCell`` (dt = 1: ``v + (x - v) tau_mem_inv``, the PLIF's charge)
    stepped over T with a learned ``tau_mem_inv``; its SuperSpike surrogate and its reset
    (not detached) are Norse's own: the backward differs from the PLIF's."""

    def __init__(self, tau: float) -> None:
        super().__init__()
        from norse.torch import LIFBoxCell, LIFBoxParameters

        self.tau_mem_inv = nn.Parameter(torch.tensor(1 / tau))
        params = LIFBoxParameters(tau_mem_inv=self.tau_mem_inv, v_th=torch.tensor(1.0))
        self.cell = LIFBoxCell(params, dt=1.0)

    def forward(self, x: Tensor) -> Tensor:
        state = None
        spikes = []
        for x_t in x.unbind(0):
            z, state = self.cell(x_t, state)
            spikes.append(z)
        return torch.stack(spikes)


def peer_network(net: nn.Module, library: str) -> nn.Module:
    """``net`` (a zoo PLIF network) rebuilt from ``library``'s layers, same weights."""
    if library == "spikingjelly":
        from spikingjelly.activation_based import functional, layer, neuron, surrogate
    built: list[nn.Module] = []
    for unit in _units(net):
        tau = 1 / float(torch.sigmoid(unit.w.detach())) if isinstance(unit, BaseNode) else 0.0
        if library == "spikingjelly":
            if isinstance(unit, BaseNode):
                built.append(neuron.ParametricLIFNode(init_tau=tau, detach_reset=True,
                             surrogate_function=surrogate.ATan(), step_mode="m"))  # fmt: skip
            elif isinstance(unit, layers.Dropout):
                built.append(layer.Dropout(unit.p, step_mode="m"))
            elif isinstance(unit, layers.VotingLayer):
                built.append(layer.VotingLayer(unit.voting_size, step_mode="m"))
            else:
                built.append(layer.SeqToANNContainer(_torch_layer(unit)))
        elif isinstance(unit, BaseNode):
            built.append(SnnTorchPLIF(tau) if library == "snntorch" else NorsePLIF(tau))
        elif isinstance(unit, layers.Dropout):
            built.append(SharedDropout(unit.p))
        elif isinstance(unit, layers.VotingLayer):
            built.append(Voting(unit.voting_size))
        else:
            built.append(Folded(_torch_layer(unit)))
    peer = nn.Sequential(*built)
    if library == "spikingjelly":
        functional.set_step_mode(peer, "m")
    return peer


def _without_dropout(net: nn.Module) -> nn.Module:
    """A float64 copy of ``net`` in training mode (batch norms on the batch's statistics,
    so that the layers fire) with its dropout layers off."""
    net = copy.deepcopy(net).double().train()
    for module in net.modules():
        if "Dropout" in type(module).__name__:
            module.eval()
    return net


def check_at_init(net: nn.Module, peers: dict[str, nn.Module], x: Tensor) -> None:
    """Each peer's spikes vs spikeflow's, layer by layer, on ``x`` (float64 copies in
    training mode without dropout): the count of spikes that differ in every neuron
    layer, and the largest difference of the outputs."""
    with torch.no_grad():
        ours = list(_units(_without_dropout(net)))
        for name, peer in peers.items():
            h_ours = h_peer = x.double()
            differ, rates = [], []
            for unit, peer_unit in zip(ours, _without_dropout(peer), strict=True):
                h_ours, h_peer = unit(h_ours), peer_unit(h_peer)
                if isinstance(unit, BaseNode):
                    differ.append(int((h_ours != h_peer).sum()))
                    rates.append(f"{h_ours.mean().item():.3f}")
            print(f"  check at init vs spikeflow: {name:<13} spikes differing per layer "
                  f"{differ} (spikeflow's rates {', '.join(rates)}), max |output diff| = "
                  f"{(h_ours - h_peer).abs().max().item():.3g}")  # fmt: skip


# -- runners: one step each, data fetch included -------------------------------------------


def loop_runner(
    net: nn.Module, dataset: Dataset, T: int, static: bool, batch: int, reset: Callable | None
) -> Callable[[int], list[float]]:
    """A plain training loop over a shuffled DataLoader; returns ``run(n) -> times``."""
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    net.train()

    def batches() -> Iterator[tuple[Tensor, Tensor]]:
        while True:
            yield from DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True)

    source = batches()

    def run(n: int) -> list[float]:
        times = []
        for _ in range(n):
            start = clock()
            x, y = next(source)
            x = x.unsqueeze(0).expand(T, *x.shape) if static else x.transpose(0, 1)
            loss = rate_mse_loss(net(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if reset is not None:
                reset()
            times.append(clock() - start)
        return times

    return run


def trainer_runner(config: TrainConfig, batch: int) -> Callable[[int], list[float]]:
    """``Trainer.fit`` of one epoch of ``n + 1`` steps; the time between the ends of
    consecutive steps (so the first step, which builds the DataLoader, is not one)."""

    def run(n: int) -> list[float]:
        ends: list[float] = []

        class Clock:
            def on_step_end(self, *args: object) -> None:
                ends.append(clock())

        with tempfile.TemporaryDirectory() as out:
            config.output_dir = str(Path(out) / "run")
            config.train_samples = (n + 1) * batch
            Trainer(config, callbacks=[Clock()], log=None).fit()
        return [b - a for a, b in itertools.pairwise(ends)]

    return run


def time_runners(runners: dict[str, Callable[[int], list[float]]], args) -> dict[str, float]:
    """Median step of each round (after the warm-up steps), median over rounds (ms)."""
    rounds: dict[str, list[float]] = {name: [] for name in runners}
    for r in range(args.rounds):
        for name, run in runners.items():
            times = run(args.warmup + args.steps)[args.warmup :]
            rounds[name].append(statistics.median(times))
            print(f"  round {r + 1}: {name:<20} median step {1e3 * rounds[name][-1]:8.2f} ms "
                  f"(min {1e3 * min(times):.2f})", flush=True)  # fmt: skip
    return {name: 1e3 * statistics.median(v) for name, v in rounds.items()}


def report(title: str, medians: dict[str, float], batch: int) -> None:
    base = medians.get("spikeflow loop")
    print(f"\n{title}: median over rounds of the median step")
    print(f"  {'runner':<20} {'step ms':>9} {'samples/s':>10} {'vs spikeflow loop':>18}")
    for name, ms in medians.items():
        ratio = f"{ms / base:.2f}x" if base else "-"
        print(f"  {name:<20} {ms:9.2f} {1e3 * batch / ms:10.1f} {ratio:>18}")


def training_job(
    title: str, config: TrainConfig, model_kwargs: dict, batch: int, args
) -> dict[str, float]:
    """Time the trainer, the plain loop and the peers on ``config``'s dataset."""
    config.threads, config.batch_size, config.epochs = args.threads, batch, 1
    config.plots, config.progress, config.test_samples = "off", False, batch
    config.model_kwargs = model_kwargs
    config = resolve(config)
    with contextlib.redirect_stdout(io.StringIO()):
        train_set, _, info = build_datasets(config)
    torch.manual_seed(0)
    model = build_model(config, info)
    x, _ = next(iter(DataLoader(train_set, batch_size=batch)))
    T, static = int(config.T), info.static  # type: ignore[arg-type]
    x = x.unsqueeze(0).expand(T, *x.shape) if static else x.transpose(0, 1)
    print(f"\n{title}: {config.model} {model_kwargs or ''}, input {list(x.shape)}")
    peers: dict[str, nn.Module] = {}
    for library in args.peers:
        try:
            peers[library] = peer_network(model, library)
        except ImportError as exc:
            print(f"  {library}: unavailable: {exc}")
    check_at_init(model, peers, x)
    runners = {"spikeflow trainer": trainer_runner(config, batch),
               "spikeflow loop": loop_runner(model, train_set, T, static, batch, None)}  # fmt: skip
    for library, peer in peers.items():
        reset = None
        if library == "spikingjelly":
            from spikingjelly.activation_based import functional

            reset = lambda peer=peer: functional.reset_net(peer)  # noqa: E731
        runners[library] = loop_runner(peer, train_set, T, static, batch, reset)
    medians = time_runners(runners, args)
    report(title, medians, batch)
    return medians


# -- (b) the data pipeline alone -------------------------------------------------------------


class _FileFrames(Dataset):
    """A peer's per-file frames: ``frames(path)`` -> ``[T, 2, 34, 34]`` array."""

    def __init__(self, samples: list[tuple[Path, int]], frames: Callable) -> None:
        self.samples, self.frames = samples, frames

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        path, label = self.samples[index]
        return torch.from_numpy(self.frames(path)).float(), label


def data_pipeline(args, cache_dir: str) -> None:
    from bench_data import TONIC_DTYPE, load_spikingjelly, load_tonic

    from spikeflow.data.datasets import NMNIST

    T = 10
    kwargs = {"data_type": "frame", "frames_number": T, "split_by": "number"}
    uncached = NMNIST(args.data_dir, train=True, cache_dir=None, **kwargs)
    cached = NMNIST(args.data_dir, train=True, cache_dir=cache_dir, **kwargs)
    start = time.perf_counter()
    for _ in DataLoader(cached, batch_size=16):
        pass
    fill = time.perf_counter() - start
    print(f"\nN-MNIST data pipeline, {len(cached)} training files, T = {T} frames by count, "
          f"batch 16; filling spikeflow's frame cache took {fill:.2f} s")  # fmt: skip
    sets: dict[str, Dataset] = {"spikeflow (no cache)": uncached, "spikeflow (cached)": cached}
    tonic, sj = load_tonic(), load_spikingjelly()
    samples = [(Path(p), label) for p, label in cached.samples]
    if tonic is not None:
        to_frame = tonic.transforms.ToFrame(sensor_size=(34, 34, 2), n_event_bins=T)
        sets["tonic ToFrame"] = _FileFrames(
            samples, lambda p: to_frame(tonic.io.read_mnist_file(str(p), TONIC_DTYPE))
        )
        # Not the same frames: Tonic's bins hold N // T events each (the last N % T
        # dropped), spikeflow's and SpikingJelly's split all N events; the same work.
        pairs = [(sets["tonic ToFrame"][i][0], cached[i][0]) for i in range(0, len(cached), 50)]
        diff = max((a - b).abs().max().item() for a, b in pairs)
        dropped = max((b.sum() - a.sum()).item() for a, b in pairs)
        print(f"  check: tonic frames vs spikeflow's, max |diff| = {diff:.3g}, at most "
              f"{dropped:.0f} events (< T) left out per file ({len(pairs)} files)")  # fmt: skip
    if sj is not None:
        sets["spikingjelly"] = _FileFrames(
            samples,
            lambda p: sj.integrate_events_by_fixed_frames_number(
                sj.load_ATIS_bin(str(p)), "number", T, 34, 34
            ),
        )
        checked = range(0, len(cached), 50)
        diff = max((sets["spikingjelly"][i][0] - cached[i][0]).abs().max().item()
                   for i in checked)  # fmt: skip
        print(f"  check: spikingjelly frames vs spikeflow's, max |diff| = {diff:.3g} "
              f"({len(checked)} files)")  # fmt: skip
    rounds: dict[str, list[float]] = {name: [] for name in sets}
    for _ in range(args.rounds):
        for name, dataset in sets.items():
            start = clock()
            for _batch in DataLoader(dataset, batch_size=16, shuffle=True):
                pass
            rounds[name].append(clock() - start)
    base = statistics.median(rounds["spikeflow (cached)"])
    print(f"  {'pipeline':<22} {'epoch s':>8} {'ms/batch':>9} {'vs cached':>10}")
    batches = -(-len(cached) // 16)
    for name, values in rounds.items():
        med = statistics.median(values)
        print(f"  {name:<22} {med:8.3f} {1e3 * med / batches:9.2f} {med / base:9.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    ap.add_argument("--jobs", nargs="+", default=["digits", "nmnist"],
                    choices=["digits", "nmnist"])  # fmt: skip
    ap.add_argument("--steps", type=int, default=10, help="timed steps per runner and round")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--channels", type=int, default=32, help="plif_nmnist's conv width")
    ap.add_argument("--peers", nargs="*", default=["spikingjelly", "snntorch", "norse"])
    ap.add_argument("--data-dir", default=str(NMNIST_DIR), help="the N-MNIST subset (job b)")
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                    help="step times in wall time or this process's CPU time")  # fmt: skip
    args = ap.parse_args()
    global clock
    clock = CLOCKS[args.clock]
    print(f"step times: {args.clock} clock")
    start_benchmark(args.threads, "cpu")
    if "digits" in args.jobs:
        training_job("(a) spikeflow train's default job", TrainConfig(), {}, 32, args)
    if "nmnist" in args.jobs:
        if not Path(args.data_dir).is_dir():
            print(f"(b) skipped: no N-MNIST subset at {args.data_dir}")
            return
        with tempfile.TemporaryDirectory() as cache:
            data_pipeline(args, cache)
            config = TrainConfig(dataset="nmnist", data_dir=args.data_dir, cache_dir=cache)
            training_job("(b) conv net on real N-MNIST frames", config,
                         {"channels": args.channels}, 16, args)  # fmt: skip


if __name__ == "__main__":
    main()
