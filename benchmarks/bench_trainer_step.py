"""The Trainer's own cost per step: its ``_train_step`` against the plain loop's step on
the same batch, model and optimizer, in one process, interleaved call by call.

``bench_end_to_end.py`` times whole steps of separate runs, data included; on a shared
machine their medians move by more than the trainer's bookkeeping (a few hundred µs of
a ~8 ms digits step). Here the three runners alternate on one batch held in memory,
with the cyclic GC off, timed in this process's CPU time:

- ``loop``: forward, ``rate_mse_loss``, ``zero_grad``, backward, Adam step;
- ``trainer``: ``Trainer._train_step`` (its spike monitor's hooks, loss check,
  running sums, accuracy count, delay clamp, gradient scaler);
- ``trainer, monitor paused``: the same with the monitor's hooks registered but
  paused (``enabled = False``): the monitor's work is the difference to ``trainer``.

    python benchmarks/bench_trainer_step.py --reps 200      # ~15 s on 2 cores
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from pathlib import Path

import torch

from spikeflow.losses import rate_mse_loss
from spikeflow.training.config import TrainConfig
from spikeflow.training.data import to_time_major
from spikeflow.training.trainer import Trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    ap.add_argument("--reps", type=int, default=200, help="timed calls of each runner")
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as out:
        # spikeflow train's default job (plif_digits, T = 4, batch 32), set up by a
        # one-epoch run of two steps; then its model and optimizer are stepped here.
        config = TrainConfig(threads=1, batch_size=32, epochs=1, plots="off", progress=False,
                             train_samples=64, test_samples=32,
                             output_dir=str(Path(out) / "run"))  # fmt: skip
        trainer = Trainer(config, log=None)
        trainer.fit()
    from spikeflow.training.monitors import SpikeMonitor

    trainer.train_monitor = SpikeMonitor(trainer.raw_model)  # (fit removed its hooks)
    model, optimizer = trainer.raw_model.train(), trainer.optimizer
    x = torch.stack([trainer.train_set[i][0] for i in range(32)])
    y = torch.tensor([int(trainer.train_set[i][1]) for i in range(32)])
    T = int(trainer.config.T)  # type: ignore[arg-type]

    def loop() -> None:
        loss = rate_mse_loss(model(to_time_major(x, T, trainer.layout)), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def trainer_step() -> None:
        trainer._train_step(x, y, 0, 10)

    def paused() -> None:
        trainer.train_monitor.enabled = False
        trainer._train_step(x, y, 0, 10)
        trainer.train_monitor.enabled = True

    runners = {"loop": loop, "trainer": trainer_step, "trainer, monitor paused": paused}
    times: dict[str, list[int]] = {name: [] for name in runners}
    for run in runners.values():
        for _ in range(5):
            run()
    gc.collect()
    gc.disable()
    try:
        for _ in range(args.reps):
            for name, run in runners.items():
                start = time.process_time_ns()
                run()
                times[name].append(time.process_time_ns() - start)
    finally:
        gc.enable()
    print(f"{'runner':<26} {'min us':>9} {'p10 us':>9} {'median us':>10}")
    for name, values in times.items():
        values.sort()
        print(f"{name:<26} {values[0] / 1e3:9.1f} {values[len(values) // 10] / 1e3:9.1f} "
              f"{values[len(values) // 2] / 1e3:10.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
