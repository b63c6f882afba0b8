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
and without the KV cache (the same bytes), and decoding (``--decode-levels``): beam
search (4 beams) and sampling (top-k 50, one ``torch.Generator`` seed shared by all
models, so the draws are coupled) from validation prompts, each spiking model's
continuations against the float model's: how many bytes they share before the first
difference, and how many prompts' continuations are identical.

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


def common_prefix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per row, how many leading tokens ``a`` and ``b`` ``[N, n]`` share."""
    return (a == b).long().cumprod(1).sum(1)


def decoding(model, calibration, prompts: torch.Tensor, levels_list: list[int], new: int):
    """Beam search and coupled sampling of the spiking models (``T = L``) against the
    float model's (``transformers``' ``generate``); returns ``{L: (beam prefix, beam
    identical, sample prefix, sample identical)}`` (mean bytes shared before the first
    difference, share of prompts with the same continuation), ``'exact'`` for the
    conversion without spikes."""

    def continuations(snn):
        start = prompts.shape[1]
        beams = snn.generate(prompts, new, num_beams=4)  # the model has no eos id
        seed = torch.Generator().manual_seed(0)
        drawn = snn.generate(prompts, new, do_sample=True, generator=seed)
        return beams[:, start:], drawn[:, start:]

    start = prompts.shape[1]
    float_beams = model.generate(prompts, max_new_tokens=new, num_beams=4, do_sample=False)
    torch.manual_seed(0)  # the draws of the generator seeded 0 above
    float_drawn = model.generate(prompts, max_new_tokens=new, do_sample=True)
    float_beams, float_drawn = float_beams[:, start:], float_drawn[:, start:]
    rows = {}
    print(f"| L = T | beam: bytes shared (of {new}) | beam identical | sampled: bytes shared "
          "| sampled identical |")  # fmt: skip
    print("|---|---|---|---|---|")
    models = [("exact", convert_causal_lm(model, 2))] + [
        (L, convert_causal_lm(model, L, calibrate_causal_lm(model, calibration, L)))
        for L in levels_list
    ]
    for name, snn in models:
        beams, drawn = continuations(snn)
        row = []
        for ours, theirs in ((beams, float_beams), (drawn, float_drawn)):
            shared = common_prefix(ours, theirs).double()
            row += [float(shared.mean()), float((shared == new).double().mean())]
        rows[name] = tuple(row)
        print(
            f"| {name} | {row[0]:.1f} | {100 * row[1]:.0f} % | {row[2]:.1f} | "
            f"{100 * row[3]:.0f} % |"
        )
    return rows


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
    parser.add_argument(
        "--decode-levels", default="4,8,16,32,64", help="the L = T of the decoding table"
    )
    parser.add_argument("--decode-prompts", type=int, default=64)
    parser.add_argument("--decode-new", type=int, default=16, help="bytes per continuation")
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
        decoded = {}
        if args.decode_levels:
            prompts = windows(val_ids, args.decode_prompts, 32, gen)
            decode_levels = [int(x) for x in args.decode_levels.split(",")]
            decoded = decoding(model, calibration, prompts, decode_levels, args.decode_new)
    print(f"wall time {time.time() - start:.0f} s")
    return {
        "rows": rows,
        "float_bpb": float_bpb,
        "cache_equal": torch.equal(cached, full),
        "decoding": decoded,
    }


if __name__ == "__main__":
    main()
