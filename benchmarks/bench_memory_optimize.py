"""Automatic memory optimisation: ``spikeflow.memory.optimize`` vs SpikingJelly 2.0's
``memopt.optimize_memory``, against plain BPTT, on a SEW ResNet-18: peak memory and time
of a training step, each runner in processes of its own.

The network is each library's SEW ResNet-18 (ADD connections, IF neurons, multi-step)
on ``[T, B, 3, SIZE, SIZE]`` inputs (uniform noise, the stem's input), 10 classes; one
training step is the per-step cross-entropy (mean over steps), its backward pass and
an SGD step.

Runners:

- ``spikeflow bptt``: the plain network.
- ``spikeflow recompute all``: ``recompute_blocks(net)`` (every block, "auto").
- ``spikeflow optimize``: ``memory.optimize(net, x, loss_fn=...)``: as little memory as
  recomputing gives, measured (no budget).
- ``spikeflow optimize 0.75``: ``memory.optimize(net, x, 0.75, ...)``: at most 3/4 of the
  plain network's peak, with as little recomputation as measured to fit.
- ``spikingjelly bptt``: its ``sew_resnet18`` (``IFNode``, multi-step).
- ``spikingjelly optimize_memory``: ``memopt.optimize_memory(net, BasicBlock,
  example_forward, level=1)``: every block checkpointed, binary inputs bit-compressed.
  Its levels 2-4 (splitting, greedy unwrapping) measure CUDA memory and refuse a CPU
  model, so level 1 is what it offers on a CPU.

``optimize`` runs once (in a process of its own, printing its plan); the processes that
measure load the plan it chose. Memory: the peak resident set of the second training
step less what the process held before it (``/proc/self/clear_refs``; glibc told to
map every block of 128 KiB or more on its own, so freed tensors leave the resident
set), and, in the same process, the peak of the tensor storages the step allocates
(``memory.step_peak_memory``: what ``optimize`` measures). Times: the median of
``--repeat`` steps after two, in ``--rounds`` rounds over the runners, each a fresh
process with glibc's default allocator settings; the median of the rounds.

    python benchmarks/bench_memory_optimize.py --T 4 --batch 8 --size 64 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import sys
import tempfile
import time
import types

import torch
from _common import start as start_benchmark
from bench_memory import (
    _status_bytes,
    measure_in_rounds,
    per_step_ce,
    run_child_process,
    train_step,
)
from torch import Tensor, nn

from spikeflow.errors import ConfigurationError
from spikeflow.memory import optimize, recompute_blocks, step_peak_memory
from spikeflow.models import create_model

RUNNERS = (
    "spikeflow bptt",
    "spikeflow recompute all",
    "spikeflow optimize",
    "spikeflow optimize 0.75",
    "spikingjelly bptt",
    "spikingjelly optimize_memory",
)


def _spikingjelly_zoo() -> types.ModuleType:
    """SpikingJelly's ``sew_resnet`` (only its download helper needs torchvision)."""
    try:
        import torchvision  # noqa: F401
    except ImportError:
        fake = types.ModuleType("torchvision")
        models = types.ModuleType("torchvision.models")
        utils = types.ModuleType("torchvision.models.utils")
        utils.load_state_dict_from_url = None  # type: ignore[attr-defined]
        fake.models, models.utils = models, utils  # type: ignore[attr-defined]
        sys.modules.update(
            {"torchvision": fake, "torchvision.models": models, "torchvision.models.utils": utils}
        )
    from spikingjelly.activation_based.model import sew_resnet

    return sew_resnet


def data(T: int, batch: int, size: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(T, batch, 3, size, size, generator=g), torch.randint(0, 10, (batch,))


def build(name: str, x: Tensor, y: Tensor, plan_file: str | None) -> nn.Module:
    torch.manual_seed(0)
    if name.startswith("spikingjelly"):
        from spikingjelly.activation_based import functional as sj_functional
        from spikingjelly.activation_based import neuron, surrogate

        sew_resnet = _spikingjelly_zoo()
        net = sew_resnet.sew_resnet18(
            spiking_neuron=neuron.IFNode,
            surrogate_function=surrogate.ATan(),
            detach_reset=True,
            cnf="ADD",
            num_classes=10,
        )
        sj_functional.set_step_mode(net, "m")
        if name.endswith("optimize_memory"):
            from spikingjelly.activation_based import memopt

            memopt.optimize_memory(
                net, sew_resnet.BasicBlock, lambda m: m(x), level=1, compress=True
            )
            sj_functional.reset_net(net)
        return net
    net = create_model("sew_resnet18", num_classes=10, in_channels=3)
    if name == "spikeflow recompute all":
        recompute_blocks(net)
    elif name.startswith("spikeflow optimize"):
        if plan_file is None:
            raise SystemExit("spikeflow optimize runners need the plan (run without --child)")
        with open(plan_file, "rb") as f:
            pickle.load(f)[name].apply(net)
    return net


def plan_child(args: argparse.Namespace) -> dict:
    """Run ``optimize`` for the two spikeflow optimize runners; pickle the plans."""
    x, y = data(args.T, args.batch, args.size)
    plans, shown = {}, {}
    for name, budget in (("spikeflow optimize", None), ("spikeflow optimize 0.75", 0.75)):
        net = build("spikeflow bptt", x, y, None)
        start = time.perf_counter()
        try:
            plan = optimize(net, x, budget, loss_fn=lambda out: per_step_ce(out, y), repeat=1)
        except ConfigurationError as error:  # a budget recomputing cannot meet
            shown[name] = str(error)
            continue
        seconds = time.perf_counter() - start
        plans[name] = plan
        shown[name] = f"{plan}\n(optimize took {seconds:.0f} s)"
    with open(args.plan_file, "wb") as f:
        pickle.dump(plans, f)
    return shown


def child(args: argparse.Namespace) -> dict:
    name, what = args.child.rsplit(":", 1)
    x, y = data(args.T, args.batch, args.size)
    net = build(name, x, y, args.plan_file)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    train_step(net, x, y, optimizer)  # first-call costs, the optimizer's state
    if what == "memory":
        optimizer.zero_grad(set_to_none=True)  # the step's gradients count, as in optimize
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak resident set (VmHWM)
        before = _status_bytes("VmRSS")
        train_step(net, x, y, optimizer)
        rss = _status_bytes("VmHWM") - before
        optimizer.zero_grad(set_to_none=True)
        tensors = step_peak_memory(net, x, lambda out: per_step_ce(out, y))
        return {"rss": rss, "tensors": tensors}
    train_step(net, x, y, optimizer)
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        train_step(net, x, y, optimizer)
        times.append(1000 * (time.perf_counter() - start))
    return {"ms": statistics.median(times)}


def _run_child(name: str, what: str, args: argparse.Namespace) -> dict | None:
    command = [sys.executable, __file__, "--child", f"{name}:{what}", "--T", str(args.T),
               "--batch", str(args.batch), "--size", str(args.size), "--repeat",
               str(args.repeat), "--plan-file", args.plan_file]  # fmt: skip
    return run_child_process(command, name, what, args.threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--T", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=2, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds over the runners")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--runners", nargs="+", default=list(RUNNERS), choices=RUNNERS)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--plan-file", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        result = plan_child(args) if args.child == "plan:plan" else child(args)
        print(json.dumps(result))
        return
    start_benchmark(args.threads, "cpu")
    print(f"SEW ResNet-18, input [T={args.T}, B={args.batch}, 3, {args.size}, {args.size}]")
    with tempfile.TemporaryDirectory() as tmp:
        args.plan_file = os.path.join(tmp, "plans.pkl")
        if any(n.startswith("spikeflow optimize") for n in args.runners):
            shown = _run_child("plan", "plan", argparse.Namespace(**{**vars(args)}))
            for name, text in (shown or {}).items():
                print(f"\n{name}:\n{text}")
        results = measure_in_rounds(
            args.runners, args.rounds, lambda name, what: _run_child(name, what, args)
        )
    _print({k: v for k, v in results.items() if "ms" in v})


def _print(results: dict[str, dict]) -> None:
    print(
        f"\n{'runner':<30}{'RSS MB':>8}{'vs bptt':>9}{'tensor MB':>11}{'vs bptt':>9}"
        f"{'step ms':>9}{'vs bptt':>9}"
    )
    for name, r in results.items():
        plain = results.get(f"{name.split()[0]} bptt")
        ratios = {k: f"{r[k] / plain[k]:.2f}x" if plain else "-" for k in ("rss", "tensors", "ms")}
        print(
            f"{name:<30}{r['rss'] / 2**20:>8.0f}{ratios['rss']:>9}"
            f"{r['tensors'] / 2**20:>11.0f}{ratios['tensors']:>9}{r['ms']:>9.0f}{ratios['ms']:>9}"
        )
    ours, theirs = results.get("spikeflow optimize"), results.get("spikingjelly optimize_memory")
    if ours and theirs:
        print(
            f"spikeflow optimize vs spikingjelly optimize_memory: RSS "
            f"{ours['rss'] / theirs['rss']:.2f}x, "
            f"tensors {ours['tensors'] / theirs['tensors']:.2f}x, "
            f"time {ours['ms'] / theirs['ms']:.2f}x"
        )


if __name__ == "__main__":
    main()
