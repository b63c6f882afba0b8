"""Peak memory of one spiking decoding step of a converted LLM against a long cache:
the grouped-query attention as it is (``scaled_dot_product_attention(enable_gqa=True)``,
the steps as query blocks reading the cache once), the same with the cache copied per
step, and the former form that repeated the keys and values (cache included) per step
and per query head.

The model is Qwen2-0.5B scaled down: its attention (14 query heads, 2 key/value heads
of 64, hidden 896), 2 layers, MLP width 1024, vocabulary 1000, random weights (memory
does not depend on them). The cache ``[B, 2, P, 64]`` per layer is random; one new token
per sequence runs ``T`` steps in ``mode="spikes"``. Memory is the peak of the live
tensor bytes that ``torch.profiler`` (``profile_memory=True``) records during the step,
allocations and frees in time order. The forms run on the same model and cache; the
logits of the per-step copies are checked equal to the former form's bit for bit, those
of the query blocks differ by float32 rounding of the attention (the largest difference
is printed; the spike encoders round the sums, so a value at a rounding boundary could
move by one threshold).

    python benchmarks/bench_llm_attention_memory.py              # B=2, P=4096, T=16
    python benchmarks/bench_llm_attention_memory.py --batch 8 --past 4096 --steps 16
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from spikeflow.conversion import convert_causal_lm, llm_attention
from spikeflow.conversion.llm import SpikingKVCache
from spikeflow.conversion.llm_attention import CausalGQA

HEADS, KV_HEADS, HEAD_DIM = 14, 2, 64


def _repeated_forward(self, q, k, v, mask, past_k=None, past_v=None):
    """The former CausalGQA.forward: the cache repeated per step, then the key/value
    heads repeated per query head."""
    repeat = q.shape[0] // mask.shape[0]
    if past_k is not None:
        k = torch.cat([past_k.repeat(repeat, 1, 1, 1), k], dim=2)
        v = torch.cat([past_v.repeat(repeat, 1, 1, 1), v], dim=2)
    k = k.repeat_interleave(self.groups, dim=1)
    v = v.repeat_interleave(self.groups, dim=1)
    mask = mask.repeat(repeat, 1, 1, 1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)


def _peak_bytes(run) -> tuple[int, torch.Tensor]:
    """The peak of the live tensor bytes the profiler records during ``run()``."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = run()
    events = prof.profiler.kineto_results.events()
    changes = sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in changes:
        live += nbytes
        peak = max(peak, live)
    return peak, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--past", type=int, default=4096, help="cached positions P")
    parser.add_argument("--steps", type=int, default=16, help="T")
    parser.add_argument("--layers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    import transformers

    config = transformers.Qwen2Config(
        vocab_size=1000, hidden_size=HEADS * HEAD_DIM, intermediate_size=1024,
        num_hidden_layers=args.layers, num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS, max_position_embeddings=args.past + 64,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.Qwen2ForCausalLM(config).eval()
    calibration = [torch.randint(0, 1000, (2, 32))]
    snn = convert_causal_lm(model, steps=args.steps, calibration=calibration)
    shape = (args.batch, KV_HEADS, args.past, HEAD_DIM)
    cache = SpikingKVCache(
        tuple((torch.randn(shape), torch.randn(shape)) for _ in range(args.layers))
    )
    token = torch.randint(0, 1000, (args.batch, 1))

    def step() -> torch.Tensor:
        with torch.no_grad():
            return snn(token, past_key_values=cache, mode="spikes").logits

    results = {}
    forward, cheaper = CausalGQA.forward, llm_attention._queries_cheaper
    forms = {
        "steps as query blocks": (forward, cheaper),
        "cache copied per step": (forward, lambda *_: False),
        "repeated per head": (_repeated_forward, cheaper),
    }
    for name, (form, choice) in forms.items():
        CausalGQA.forward, llm_attention._queries_cheaper = form, choice
        try:
            step()  # warm-up
            results[name] = _peak_bytes(step)
        finally:
            CausalGQA.forward, llm_attention._queries_cheaper = forward, cheaper
    (_, blocks), (_, copied), (_, repeated) = results.values()
    assert torch.equal(copied, repeated), "the per-step copies' logits differ"
    gap = (blocks - repeated).abs().max().item()
    cache_mib = 2 * args.layers * torch.Size(shape).numel() * 4 / 2**20
    print(
        f"B={args.batch} P={args.past} T={args.steps} layers={args.layers}; cache "
        f"{cache_mib:.0f} MiB (float32); logits: per-step copies = repeated bit for bit, "
        f"query blocks within {gap:.1e}"
    )
    for name, (peak, _) in results.items():
        print(f"  {name:22s} peak live tensors during the step: {peak / 2**20:8.1f} MiB")


if __name__ == "__main__":
    main()
