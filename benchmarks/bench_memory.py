"""Recomputed blocks (gradient checkpointing) vs plain BPTT: peak memory and time of a
training step, spikeflow and SpikingJelly (its ``memopt``) side by side in one run.

The network is a VGG-style convolutional SNN on DVS-sized ``[T, B, 2, 64, 64]`` frames:
three stages of four {conv3x3-BN-LIF} blocks (32, 64, 128 channels), each stage ending
in MaxPool2, then a linear read-out giving per-step logits. One training step is the
per-step cross-entropy (mean over steps), its backward pass and an SGD step.

Runners (each with the same weights):

- ``spikeflow bptt``: the plain network.
- ``spikeflow recompute``: ``spikeflow.memory.recompute_blocks(net)`` (``"auto"``: one
  segment per conv block, each keeping its input packed at one bit per spike).
- ``spikeflow recompute, unpacked``: the same with ``pack="none"`` (float inputs kept).
- ``spikingjelly bptt``: SpikingJelly 2.0's multi-step layers and ``LIFNode``.
- ``spikingjelly memopt``: each of its conv blocks wrapped in
  ``memopt.checkpoint_module(block, compressor=BitSpikeCompressor())``.

Memory is the peak resident memory of a training step less what the process held
before it (the second step of a fresh process, after ``/proc/self/clear_refs`` reset the
peak; glibc is told to map every block of 128 KiB or more on its own, so freed tensors
leave the resident set), or on CUDA ``torch.cuda.max_memory_allocated`` less the memory
allocated before the step. Each runner's memory and times are measured in processes of
their own (the times with glibc's default allocator settings, after two untimed steps),
the times in ``--rounds`` rounds over the runners, so that each runner sees every phase
of a machine whose speed drifts. Before timing, each
recomputed runner is checked to give the outputs and gradients of its library's plain
network.

    python benchmarks/bench_memory.py                 # T=16, batch 8, 3 rounds
    python benchmarks/bench_memory.py --T 8 --batch 16 --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
from _common import start as start_benchmark
from torch import Tensor, nn

from spikeflow import functional, layers, neurons
from spikeflow.memory import recompute_blocks

#: (in channels, out channels, convolutions) of each stage; a stage ends in MaxPool2d.
STAGES = ((2, 32, 4), (32, 64, 4), (64, 128, 4))
SIZE = 64
LIF = {"tau": 2.0, "v_threshold": 0.5}


def _plan() -> list[tuple[int, int, bool]]:
    """(in, out, pool after) of every conv block."""
    plan = []
    for c_in, c_out, convs in STAGES:
        for k in range(convs):
            plan.append((c_in if k == 0 else c_out, c_out, k == convs - 1))
    return plan


def _head_features() -> int:
    return STAGES[-1][1] * (SIZE >> len(STAGES)) ** 2


def spikeflow_net() -> nn.Sequential:
    blocks: list[nn.Module] = []
    for c_in, c_out, pool in _plan():
        blocks += [layers.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                   layers.BatchNorm2d(c_out), neurons.LIFNode(**LIF)]  # fmt: skip
        if pool:
            blocks.append(layers.MaxPool2d(2))
    return nn.Sequential(*blocks, layers.Flatten(), layers.Linear(_head_features(), 10))


def spikingjelly_net(memopt: bool) -> nn.Module:
    """The same network from SpikingJelly's layers, one nn.Sequential per conv block
    (each wrapped by ``memopt.checkpoint_module`` when ``memopt``)."""
    from spikingjelly.activation_based import functional as sj_functional
    from spikingjelly.activation_based import layer, neuron

    blocks: list[nn.Module] = []
    for c_in, c_out, pool in _plan():
        block = nn.Sequential(
            layer.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            layer.BatchNorm2d(c_out),
            neuron.LIFNode(**LIF),
            *([layer.MaxPool2d(2)] if pool else []),
        )
        sj_functional.set_step_mode(block, "m")
        if memopt:
            from spikingjelly.activation_based import memopt as sj_memopt

            block = sj_memopt.checkpoint_module(block, compressor=sj_memopt.BitSpikeCompressor())
        blocks.append(block)
    head = nn.Sequential(layer.Flatten(), layer.Linear(_head_features(), 10))
    sj_functional.set_step_mode(head, "m")
    return nn.Sequential(*blocks, head)


def per_step_ce(out: Tensor, y: Tensor) -> Tensor:
    return nn.functional.cross_entropy(out.flatten(0, 1), y.repeat(out.shape[0]))


def build(name: str) -> nn.Module:
    torch.manual_seed(0)
    if name.startswith("spikingjelly"):
        net = spikingjelly_net(memopt=name.endswith("memopt"))
        reference = spikingjelly_net(memopt=False)
        net.load_state_dict(reference.state_dict())
        return net
    net = spikeflow_net()
    if name == "spikeflow recompute":
        recompute_blocks(net)
    elif name == "spikeflow recompute, unpacked":
        recompute_blocks(net, pack="none")
    return net


RUNNERS = (
    "spikeflow bptt",
    "spikeflow recompute",
    "spikeflow recompute, unpacked",
    "spikingjelly bptt",
    "spikingjelly memopt",
)


def reset(net: nn.Module) -> None:
    functional.reset_net(net)
    try:
        from spikingjelly.activation_based import functional as sj_functional

        sj_functional.reset_net(net)
    except ImportError:
        pass


def train_step(net: nn.Module, x: Tensor, y: Tensor, optimizer: torch.optim.Optimizer) -> Tensor:
    optimizer.zero_grad(set_to_none=True)
    out = net(x)
    per_step_ce(out, y).backward()
    optimizer.step()
    reset(net)
    return out.detach()


def data(T: int, batch: int, device: torch.device) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(T, batch, 2, SIZE, SIZE, generator=g) < 0.1).float().to(device)
    y = torch.randint(0, 10, (batch,), generator=g).to(device)
    return x, y


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(name: str, T: int, batch: int, device: torch.device, repeat: int, what: str) -> dict:
    """One runner in this process: the peak memory of its second step (``what`` is
    "memory"), or the median time of ``repeat`` steps after two (``"time"``)."""
    net = build(name).to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x, y = data(T, batch, device)
    train_step(net, x, y, optimizer)  # first-call costs, the optimizer's state
    if what == "memory":
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
        else:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the peak resident set (VmHWM)
            before = _status_bytes("VmRSS")
        train_step(net, x, y, optimizer)
        if device.type == "cuda":
            torch.cuda.synchronize()
            return {"peak_bytes": torch.cuda.max_memory_allocated() - before}
        return {"peak_bytes": _status_bytes("VmHWM") - before}
    train_step(net, x, y, optimizer)
    times = []
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        train_step(net, x, y, optimizer)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return {"ms": 1000 * statistics.median(times)}


def check_equal(device: torch.device, T: int) -> None:
    """Each recomputed runner gives its library's plain outputs and gradients."""
    x, y = data(T, 2, device)
    for plain_name, names in (
        ("spikeflow bptt", ("spikeflow recompute", "spikeflow recompute, unpacked")),
        ("spikingjelly bptt", ("spikingjelly memopt",)),
    ):
        results = []
        for name in (plain_name, *names):
            try:
                net = build(name).to(device)
            except ImportError:
                print(f"skipping the check of {name}: SpikingJelly is not installed")
                break
            out = net(x)
            per_step_ce(out, y).backward()
            reset(net)
            results.append((out.detach(), [p.grad for p in net.parameters()]))
        for out, grads in results[1:]:
            assert torch.equal(out, results[0][0]), "outputs differ"
            for g, h in zip(grads, results[0][1]):
                assert torch.allclose(g, h, rtol=1e-5, atol=1e-6), "gradients differ"
    print("check: every recomputed runner equals its plain network")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--T", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=2, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds over the runners")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        name, what = args.child.rsplit(":", 1)
        result = child(name, args.T, args.batch, torch.device(args.device), args.repeat, what)
        print(json.dumps(result))
        return
    device, _ = start_benchmark(args.threads, args.device)
    check_equal(device, min(args.T, 4))
    shape = f"[T, B, 2, {SIZE}, {SIZE}]"
    print(
        f"T={args.T}, batch={args.batch}, input {shape}, {args.rounds} rounds of "
        f"{args.repeat} timed steps (median step of each round, median of the rounds)"
    )
    results = measure_in_rounds(
        RUNNERS, args.rounds, lambda name, what: _run_child(name, what, args)
    )
    results = {k: v for k, v in results.items() if len(v) == 2}
    _print(results)


def measure_in_rounds(
    runners: list[str], rounds: int, run_child: Callable[[str, str], dict | None]
) -> dict[str, dict]:
    """Each runner's memory (``run_child(name, "memory")``) once, then its step time
    (``run_child(name, "time")``, a dict with ``"ms"``) in ``rounds`` rounds over the
    runners (the machine's speed drifts: each runner sees each phase of it); the median
    of the rounds is the result's ``"ms"``. A runner whose child fails is dropped."""
    results: dict[str, dict] = {}
    times: dict[str, list[float]] = {}
    for what, count in (("memory", 1), ("time", rounds)):
        for _ in range(count):
            for name in runners:
                if what == "time" and name not in results:
                    continue
                found = run_child(name, what)
                if found is None:
                    results.pop(name, None)
                elif what == "memory":
                    results[name] = found
                else:
                    times.setdefault(name, []).append(found["ms"])
    for name, values in times.items():
        if name in results:  # (a runner dropped after a timed round has no entry)
            results[name]["ms"] = statistics.median(values)
    return results


def _run_child(name: str, what: str, args: argparse.Namespace) -> dict | None:
    command = [sys.executable, __file__, "--child", f"{name}:{what}", "--T", str(args.T),
               "--batch", str(args.batch), "--repeat", str(args.repeat),
               "--device", args.device]  # fmt: skip
    return run_child_process(command, name, what, args.threads)


def run_child_process(command: list[str], name: str, what: str, threads: int | None) -> dict | None:
    """Run one runner's ``what`` ("memory" or "time") in a fresh process; its last
    stdout line is the JSON result (None, and a message, if it failed)."""
    if threads is not None:
        command = [*command, "--threads", str(threads)]
    env = dict(os.environ)
    if what == "memory":  # freed tensors leave the resident set
        env["MALLOC_MMAP_THRESHOLD_"] = str(128 * 1024)
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        print(f"{name} ({what}): failed ({last})")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def _print(results: dict[str, dict]) -> None:
    base: Callable[[str], dict | None] = lambda lib: results.get(f"{lib} bptt")  # noqa: E731
    print(f"{'runner':<32}{'peak MB':>10}{'vs bptt':>9}{'step ms':>10}{'vs bptt':>9}")
    for name, r in results.items():
        plain = base(name.split()[0])
        mem = f"{r['peak_bytes'] / plain['peak_bytes']:.2f}x" if plain else "-"
        ms = f"{r['ms'] / plain['ms']:.2f}x" if plain else "-"
        print(f"{name:<32}{r['peak_bytes'] / 2**20:>10.0f}{mem:>9}{r['ms']:>10.0f}{ms:>9}")
    ours, theirs = results.get("spikeflow recompute"), results.get("spikingjelly memopt")
    if ours and theirs:
        memory = ours["peak_bytes"] / theirs["peak_bytes"]
        print(
            f"spikeflow recompute vs spikingjelly memopt: memory {memory:.2f}x, "
            f"time {ours['ms'] / theirs['ms']:.2f}x"
        )


if __name__ == "__main__":
    main()
