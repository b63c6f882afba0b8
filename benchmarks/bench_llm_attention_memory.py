"""Peak memory of one spiking decoding step of a converted LLM against a long cache:
the grouped-query attention as it is (``scaled_dot_product_attention(enable_gqa=True)``)
vs the former form that repeated the keys and values (cache included) per query head.

The model is Qwen2-0.5B scaled down: its attention (14 query heads, 2 key/value heads
of 64, hidden 896), 2 layers, MLP width 1024, vocabulary 1000, random weights (memory
does not depend on them). The cache ``[B, 2, P, 64]`` per layer is random; one new token
per sequence runs ``T`` steps in ``mode="spikes"``. Memory is the peak of the live
tensor bytes that ``torch.profiler`` (``profile_memory=True``) records during the step,
allocations and frees in time order. Both forms are run on the same model and cache,
and their logits are checked equal bit for bit.

    python benchmarks/bench_llm_attention_memory.py              # B=2, P=4096, T=16
    python benchmarks/bench_llm_attention_memory.py --batch 8 --past 4096 --steps 16
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from spikeflow.conversion import convert_causal_lm
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
    grouped_forward = CausalGQA.forward
    for name, forward in (
        ("grouped (enable_gqa)", grouped_forward),
        ("repeated", _repeated_forward),
    ):
        CausalGQA.forward = forward
        try:
            step()  # warm-up
            results[name] = _peak_bytes(step)
        finally:
            CausalGQA.forward = grouped_forward
    (_, out_new), (_, out_old) = results.values()
    assert torch.equal(out_new, out_old), "the two forms' logits differ"
    cache_mib = 2 * args.layers * torch.Size(shape).numel() * 4 / 2**20
    print(
        f"B={args.batch} P={args.past} T={args.steps} layers={args.layers}; "
        f"cache {cache_mib:.0f} MiB (float32); logits equal bit for bit"
    )
    for name, (peak, _) in results.items():
        print(f"  {name:22s} peak live tensors during the step: {peak / 2**20:8.1f} MiB")


if __name__ == "__main__":
    main()
