"""A small Qwen2 language model trained on real text, converted to spikes (convert_causal_lm).

The model: a Hugging Face ``Qwen2ForCausalLM`` over bytes (vocabulary 256, hidden 64,
2 layers, 4 query heads sharing 2 key/value heads, SiLU-gated MLP of 128), trained with
AdamW on the corpus of ``examples/spikegpt_text.py`` (CPython's own syntax
documentation, ``pydoc_data``). It is then converted with
``convert_causal_lm(model, steps=T, calibration=..., levels=L)`` (calibration: 8
windows of the training split) for each ``L`` with ``T = L`` and ``T = 2L``; measured on
validation windows, in float64: the largest logit error against the float model after
``T/4``, ``T/2`` and ``T`` steps, the mean one after ``T``, the share of positions whose
top byte is the float model's, and the bits per byte; then the error of the quantised
model calibrated on the validation windows themselves. Then a greedy continuation with
and without the KV cache (the same bytes).

    python examples/convert_llm_text.py            # about two minutes on one core
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from spikegpt_text import corpus

from spikeflow.conversion import calibrate_causal_lm, convert_causal_lm


def windows(ids: torch.Tensor, count: int, length: int, gen: torch.Generator) -> torch.Tensor:
    """``count`` random windows ``[count, length]`` of a byte sequence."""
    starts = torch.randint(0, len(ids) - length, (count,), generator=gen)
    return torch.stack([ids[s : s + length] for s in starts.tolist()])


def train(steps: int, context: int, seed: int):
    """A byte-level Qwen2 trained for ``steps`` AdamW steps; returns it in eval mode."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        tie_word_embeddings=False,
    )  # fmt: skip
    model = Qwen2ForCausalLM(config)
    train_ids, _ = corpus()
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(steps):
        batch = windows(train_ids, 32, context + 1, gen)
        logits = model(batch[:, :-1]).logits
        loss = F.cross_entropy(logits.reshape(-1, 256), batch[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"step {step}: loss {loss.item():.3f}")
    return model.eval()


def bits_per_byte(logits: torch.Tensor, ids: torch.Tensor) -> float:
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, 256), ids[:, 1:].reshape(-1))
    return float(loss) / math.log(2)


def main(argv: list[str] | None = None) -> dict[str, object]:
    """Run the measurement; returns the table rows ``{(L, T): (max errors at T/4, T/2, T,
    mean error, top-1 agreement, bits per byte)}``, the float model's bits per byte and
    whether generation with the cache equals generation without it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="training steps")
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--levels", default="4,8,16,32,64", help="the L of the table")
    parser.add_argument("--generate", type=int, default=24, help="bytes to generate")
    args = parser.parse_args(argv)
    levels_list = [int(x) for x in args.levels.split(",")]
    rows: dict[tuple[int, int], tuple[float, ...]] = {}
    torch.set_num_threads(1)
    start = time.time()
    model = train(args.steps, args.context, args.seed).double()
    train_ids, val_ids = corpus()
    gen = torch.Generator().manual_seed(args.seed + 1)
    calibration = list(windows(train_ids, 8, args.context, gen).split(4))
    val = windows(val_ids, 8, args.context, gen)
    with torch.no_grad():
        ref = model(val).logits
        float_bpb = bits_per_byte(ref, val)
        print(
            f"float model: {bits_per_byte(ref, val):.3f} bits/byte on validation, logits in "
            f"[{ref.min():.1f}, {ref.max():.1f}]"
        )
        print("| L | T | max err t=T/4 | t=T/2 | t=T | mean err t=T | top-1 = float | bits/byte |")
        print("|---|---|---|---|---|---|---|---|")
        for levels in levels_list:
            scales = calibrate_causal_lm(model, calibration, levels=levels)
            for steps in (levels, 2 * levels):
                out = convert_causal_lm(model, steps, scales)(val, per_step=True)
                errs = [
                    float((out.step_logits[t - 1] - ref).abs().max())
                    for t in (steps // 4, steps // 2, steps)
                ]
                mean = float((out.logits - ref).abs().mean())
                agree = float((out.logits.argmax(-1) == ref.argmax(-1)).double().mean())
                rows[(levels, steps)] = (*errs, mean, agree, bits_per_byte(out.logits, val))
                print(
                    f"| {levels} | {steps} | {errs[0]:.3f} | {errs[1]:.3f} | {errs[2]:.3f} "
                    f"| {mean:.3f} | {100 * agree:.1f} % | {bits_per_byte(out.logits, val):.3f} |"
                )
        # the saturation of the largest error: values beyond the calibrated range
        for levels in (64, 256) if levels_list[-1] >= 64 else ():
            inside = convert_causal_lm(model, levels, calibrate_causal_lm(model, [val], levels))
            err = (inside(val, mode="quantized").logits - ref).abs()
            print(
                f"calibrated on the validation windows, L = T = {levels}: max err "
                f"{float(err.max()):.3f}, mean {float(err.mean()):.3f}"
            )
        snn = convert_causal_lm(model, 32, calibrate_causal_lm(model, calibration, levels=16))
        prompt = torch.tensor([list(b"The for statement")])
        cached, full = (
            snn.generate(prompt, args.generate),
            snn.generate(prompt, args.generate, use_cache=False),
        )
        text = bytes(cached[0, prompt.shape[1] :].tolist()).decode("utf-8", "replace")
        print(
            f"T=32, L=16 continuation: {text!r}; with cache = without: {torch.equal(cached, full)}"
        )
    print(f"wall time {time.time() - start:.0f} s")
    return {"rows": rows, "float_bpb": float_bpb, "cache_equal": torch.equal(cached, full)}


if __name__ == "__main__":
    main()
