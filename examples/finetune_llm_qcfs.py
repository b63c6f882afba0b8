"""Fine-tuning a converted LLM through its quantisers (``mode="qcfs_sg"``).

The byte-level Qwen2 of ``examples/convert_llm_text.py`` (trained 400 AdamW steps on
CPython's syntax documentation) is converted with few levels (``L = T = 4`` by default,
where the conversion loses most: 3.04 bits/byte against the float model's 2.69), then
fine-tuned: AdamW steps on the next-byte loss of the converted model in
``mode="qcfs_sg"`` (the quantised values forward, SpikingJelly's multi-level
spike-count surrogate gradient backward), the thresholds kept. Measured in float64 on
the validation windows of that example: the bits per byte of the spiking model
(``mode="spikes"``) before and after, and two controls: the float model trained the
same extra steps on the same batches, converted afresh (is the gain just more
training?), and the fine-tuned weights without quantisation.

    python examples/finetune_llm_qcfs.py            # about three minutes on one core
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from convert_llm_text import bits_per_byte, train, windows
from spikegpt_text import corpus

from spikeflow.conversion import calibrate_causal_lm, convert_causal_lm


def next_byte_steps(step_loss, params, batches: list[torch.Tensor], lr: float) -> list[float]:
    """AdamW on ``step_loss(batch)`` for each batch; returns the losses (nats)."""
    opt = torch.optim.AdamW(params, lr=lr)
    losses = []
    for batch in batches:
        loss = step_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def spiking_bpb(model, scales, steps: int, val: torch.Tensor) -> float:
    """Bits per byte of the spiking model (float64 copy, ``mode="spikes"``)."""
    with torch.no_grad():
        snn = convert_causal_lm(copy.deepcopy(model).double(), steps, scales)
        return bits_per_byte(snn(val).logits, val)


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the measurement; returns the bits per byte (float model, spiking before and
    after fine-tuning, the float-trained control converted, the fine-tuned weights
    unquantised) and the first and last fine-tuning losses."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="float training steps")
    parser.add_argument("--finetune-steps", type=int, default=200)
    parser.add_argument("--lr", type=float, default=1e-3, help="fine-tuning learning rate")
    parser.add_argument("--levels", type=int, default=4, help="L = T of the conversion")
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--generate", type=int, default=24, help="bytes to generate")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.time()
    model = train(args.steps, args.context, args.seed)  # float32, eval mode
    train_ids, val_ids = corpus()
    gen = torch.Generator().manual_seed(args.seed + 1)  # as convert_llm_text.py's
    calibration = list(windows(train_ids, 8, args.context, gen).split(4))
    val = windows(val_ids, 8, args.context, gen)
    levels = args.levels
    scales = calibrate_causal_lm(copy.deepcopy(model).double(), calibration, levels)
    with torch.no_grad():
        float_bpb = bits_per_byte(copy.deepcopy(model).double()(val).logits, val)
    before = spiking_bpb(model, scales, levels, val)
    print(f"float model {float_bpb:.3f} bits/byte; L = T = {levels} spikes: {before:.3f}")
    tune_gen = torch.Generator().manual_seed(args.seed + 2)
    batches = [
        windows(train_ids, 32, args.context + 1, tune_gen) for _ in range(args.finetune_steps)
    ]

    def loss_of(logits, batch):
        return F.cross_entropy(logits.reshape(-1, 256), batch[:, 1:].reshape(-1))

    # control: the float model trained the same steps on the same batches, converted afresh
    control = copy.deepcopy(model)
    next_byte_steps(
        lambda b: loss_of(control(b[:, :-1]).logits, b), control.parameters(), batches, args.lr
    )
    control64 = copy.deepcopy(control).double()
    control_bpb = spiking_bpb(
        control, calibrate_causal_lm(control64, calibration, levels), levels, val
    )
    # the recipe: convert, then fine-tune the converted model through its quantisers
    snn = convert_causal_lm(model, steps=levels, calibration=scales)  # shares model's weights
    losses = next_byte_steps(
        lambda b: loss_of(snn(b[:, :-1], mode="qcfs_sg").logits, b),
        snn.parameters(),
        batches,
        args.lr,
    )
    after = spiking_bpb(model, scales, levels, val)
    with torch.no_grad():
        unquantised = bits_per_byte(copy.deepcopy(model).double()(val).logits, val)
    print(f"fine-tuning loss (nats): step 0 {losses[0]:.3f}, last {losses[-1]:.3f}")
    print("| model | bits/byte |\n|---|---|")
    rows = {
        "float model": float_bpb,
        f"spikes L = T = {levels}, converted": before,
        f"spikes, after {args.finetune_steps} qcfs_sg steps": after,
        f"control: float trained {args.finetune_steps} more steps, converted": control_bpb,
        "fine-tuned weights, unquantised": unquantised,
    }
    for name, value in rows.items():
        print(f"| {name} | {value:.3f} |")
    with torch.no_grad():
        prompt = torch.tensor([list(b"The for statement")])
        tokens = snn.generate(prompt, args.generate)  # mode="spikes"
    text = bytes(tokens[0, prompt.shape[1] :].tolist()).decode("utf-8", "replace")
    print(f"fine-tuned spiking continuation: {text!r}")
    print(f"wall time {time.time() - start:.0f} s")
    return {
        "float": float_bpb,
        "before": before,
        "after": after,
        "control": control_bpb,
        "unquantised": unquantised,
        "first_loss": losses[0],
        "last_loss": losses[-1],
    }


if __name__ == "__main__":
    main()
