"""SpikeGPT (Zhu, Zhao, Li & Eshraghian 2023, arXiv 2302.13939): a generative spiking
language model, RWKV with spiking neurons, and its sampling.

The network, as SpikeGPT's code builds it (time-major: ``[T, B]`` token ids in,
``[T, B, vocab_size]`` next-token logits out, the tokens being the neurons' time steps):

1. embedding ``[T, B] → [T, B, C]``, then the *binary embedding*: a Heaviside step
   ``1[e >= 0]`` with the arctangent surrogate gradient (α = 2), so the blocks read
   spikes;
2. ``n_layers`` × :class:`~spikeflow.layers.rwkv.SpikingRWKVBlock` (the first normalises
   its input), whose two branches each end in a LIF neuron (τ = 2, threshold 1, hard
   reset to 0, arctangent surrogate α = 2, SpikingJelly's ``MultiStepLIFNode`` as
   SpikeGPT uses it): the binary spikes are what each branch adds to the residual stream;
3. LayerNorm and a linear head (no bias) to the vocabulary.

``spiking=False`` gives the same network without the binary embedding and with the
neurons left out (identity): RWKV-4, the non-spiking baseline of the same size.

Generation (:meth:`SpikeGPT.generate`) runs the prompt once, then one token per step with
the state carried (:func:`spikeflow.functional.run`): ``N`` new tokens cost ``N`` steps,
and the logits it samples from equal the whole-sequence forward's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from spikeflow._checks import check_int
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.functional import run
from spikeflow.layers.rwkv import SpikingRWKVBlock
from spikeflow.models.common import NeuronFactory, NeuronSpec, check_positive_int
from spikeflow.models.registry import register_model
from spikeflow.surrogate import ATan

__all__ = ["PRESETS", "SpikeGPT", "check_banned_tokens", "sample_next", "spike_gpt"]

#: SpikeGPT's neurons: SpikingJelly's MultiStepLIFNode(tau=2, ATan(alpha=2), threshold 1).
_SPIKEGPT_LIF: dict[str, Any] = {
    "tau": 2.0,
    "v_threshold": 1.0,
    "v_reset": 0.0,
    "surrogate_function": ATan(alpha=2.0),
}

#: The paper's two sizes (width and depth; its 46M and 216M counts include the
#: vocabulary: 216M with GPT-NeoX's 50,277 tokens, see docs/language.md).
PRESETS: dict[str, dict[str, int]] = {
    "small": {"d_model": 512, "n_layers": 12, "context": 1024},
    "medium": {"d_model": 768, "n_layers": 18, "context": 1024},
}


class SpikeGPT(nn.Module):
    """SpikeGPT (module docstring): ``[T, B]`` token ids → ``[T, B, vocab_size]`` logits.

    Args:
        vocab_size: tokens (256: bytes).
        d_model: width ``C``.
        n_layers: blocks.
        context: the longest sequence one call takes (the trained context); longer
            input is an error, longer generation needs ``beyond_context=True``.
        ffn_mult: the channel mix's hidden width factor (4).
        dropout: dropout after each block (SpikeGPT's code: 0.03; default 0).
        spiking: False for the non-spiking RWKV of the same size (no binary embedding,
            no neurons).
        neuron, neuron_kwargs: the branches' neurons (default ``"lif"`` with SpikeGPT's
            settings above; ``neuron_kwargs`` override them).
        chunk: the WKV's parallel chunk (tokens).
    """

    def __init__(
        self,
        vocab_size: int = 256,
        d_model: int = 128,
        n_layers: int = 4,
        context: int = 256,
        ffn_mult: int = 4,
        dropout: float = 0.0,
        spiking: bool = True,
        neuron: NeuronSpec = "lif",
        neuron_kwargs: Mapping[str, Any] | None = None,
        chunk: int = 8,
    ) -> None:
        super().__init__()
        self.vocab_size = check_positive_int("vocab_size", vocab_size)
        self.d_model = check_positive_int("d_model", d_model)
        self.n_layers = check_positive_int("n_layers", n_layers)
        self.context = check_positive_int("context", context)
        if not isinstance(spiking, bool):
            raise ConfigurationError(f"spiking must be True or False, got {spiking!r}")
        self.spiking = spiking
        self.emb = nn.Embedding(vocab_size, d_model)
        self.binary_embedding = ATan(alpha=2.0) if spiking else nn.Identity()
        factory = NeuronFactory(neuron, neuron_kwargs, _SPIKEGPT_LIF) if spiking else None

        def neurons() -> tuple[nn.Module | None, nn.Module | None]:
            return (factory(), factory()) if factory is not None else (None, None)

        self.blocks = nn.Sequential(
            *(
                SpikingRWKVBlock(d_model, i, n_layers, *neurons(), ffn_mult, dropout, chunk)
                for i in range(n_layers)
            )
        )
        self.ln_out = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)

    def check_tokens(self, tokens: Tensor, beyond_context: bool = False) -> None:
        """Raise a clear error unless ``tokens`` are integer ids ``[T, B]`` (any integer
        dtype) with ``1 <= T <= context`` (any ``T`` with ``beyond_context``) and values
        in ``[0, vocab_size)``."""
        if not isinstance(tokens, Tensor):
            raise DTypeError(f"SpikeGPT expects a tensor of token ids, got {type(tokens).__name__}")
        if tokens.is_floating_point() or tokens.is_complex() or tokens.dtype == torch.bool:
            raise DTypeError(f"SpikeGPT expects integer token ids (torch.long), got {tokens.dtype}")
        if tokens.dim() != 2 or tokens.numel() == 0:
            raise ShapeError(
                f"SpikeGPT expects non-empty time-major token ids [T, B]; got shape "
                f"{tuple(tokens.shape)} (one sequence: tokens[:, None])"
            )
        if tokens.shape[0] > self.context and not beyond_context:
            raise ShapeError(
                f"SpikeGPT: {tokens.shape[0]} tokens in one call, but the model's context "
                f"is {self.context} (what it was built and trained for): split the "
                "sequence and carry the state (spikeflow.functional.run)"
            )
        low, high = int(tokens.min()), int(tokens.max())
        if low < 0 or high >= self.vocab_size:
            raise ConfigurationError(
                f"SpikeGPT: token ids must be in [0, {self.vocab_size}); got values from "
                f"{low} to {high}"
            )

    def forward(self, tokens: Tensor) -> Tensor:
        """``[T, B]`` token ids → ``[T, B, vocab_size]`` logits of the next token."""
        self.check_tokens(tokens)
        x = self.binary_embedding(self.emb(tokens.long()))  # uint8/int16 ids too
        return self.head(self.ln_out(self.blocks(x)))

    @torch.no_grad()
    def generate(
        self,
        prompt: Tensor,
        n_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        generator: torch.Generator | None = None,
        beyond_context: bool = False,
        return_logits: bool = False,
        banned_tokens: Sequence[int] | Tensor | None = None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Sample ``n_tokens`` tokens after ``prompt`` (``[T, B]`` ids), in eval mode.

        The prompt runs once as a sequence; each new token is then one step from the
        carried state. Returns the new tokens ``[n_tokens, B]`` (and, with
        ``return_logits``, the logits each was sampled from, ``[n_tokens, B, vocab]``,
        before the ban, temperature and top-p). There is no end-of-text token: it always
        samples ``n_tokens``.

        Args:
            prompt: token ids ``[T, B]`` (any integer dtype).
            n_tokens: how many tokens to sample (>= 1).
            temperature: logits are divided by it; 0 picks the most likely token.
            top_p: nucleus sampling: sample among the most likely tokens whose
                probabilities first sum to ``top_p`` (1: all tokens).
            generator: the random generator of the sampling.
            beyond_context: allow the model to read more than ``context`` tokens, the
                prompt and the new tokens but the last (``T + n_tokens - 1``); a prompt
                longer than ``context`` then runs in pieces of ``context`` tokens, the
                state carried (the model never saw such lengths in training).
            return_logits: also return the logits each token was sampled from.
            banned_tokens: token ids never sampled (their logits set to ``-inf`` before
                temperature and top-p), e.g. ``[0]`` for GPT-NeoX's ``<|endoftext|>`` as
                SpikeGPT's ``run.py`` does; ids in ``[0, vocab_size)``, not all of them.
        """
        self.check_tokens(prompt, beyond_context)
        check_int("n_tokens", n_tokens, 1)
        banned = check_banned_tokens(banned_tokens, self.vocab_size)
        read = prompt.shape[0] + n_tokens - 1  # the last token sampled is never read
        if read > self.context and not beyond_context:
            raise ShapeError(
                f"SpikeGPT.generate: the model would read prompt ({prompt.shape[0]}) + "
                f"n_tokens ({n_tokens}) - 1 = {read} tokens, beyond the context of "
                f"{self.context} it was trained for; pass beyond_context=True to go on anyway"
            )
        was_training = self.training
        self.eval()
        try:
            state = None
            for piece in prompt.split(self.context):
                logits, state = run(self, piece, state)
            tokens, seen = [], []
            for index in range(n_tokens):
                seen.append(logits[-1])
                tokens.append(sample_next(logits[-1], temperature, top_p, generator, banned))
                if index + 1 < n_tokens:
                    logits, state = run(self, tokens[-1].unsqueeze(0), state)
        finally:
            self.train(was_training)
        new = torch.stack(tokens)
        return (new, torch.stack(seen)) if return_logits else new

    def extra_repr(self) -> str:
        return f"vocab_size={self.vocab_size}, context={self.context}, spiking={self.spiking}"


def check_banned_tokens(
    banned_tokens: Sequence[int] | Tensor | None, vocab_size: int
) -> Tensor | None:
    """``banned_tokens`` as a 1-D ``torch.long`` tensor of ids (None if None or empty),
    or a ``ConfigurationError`` unless each is an integer in ``[0, vocab_size)`` and at
    least one token of the vocabulary is left to sample."""
    if banned_tokens is None:
        return None
    if isinstance(banned_tokens, Tensor):
        if banned_tokens.is_floating_point() or banned_tokens.is_complex():
            raise ConfigurationError(
                f"banned_tokens must be integer token ids; got a {banned_tokens.dtype} tensor"
            )
        if banned_tokens.dtype == torch.bool or banned_tokens.dim() > 1:
            raise ConfigurationError(
                "banned_tokens must be a 1-D integer tensor or a sequence of ints; got a "
                f"{banned_tokens.dtype} tensor of shape {tuple(banned_tokens.shape)}"
            )
        ids = banned_tokens.reshape(-1).long()
    else:
        if isinstance(banned_tokens, (str, bytes)) or not isinstance(banned_tokens, Sequence):
            raise ConfigurationError(
                "banned_tokens must be a sequence of int token ids or a 1-D integer tensor; "
                f"got {type(banned_tokens).__name__}"
            )
        for value in banned_tokens:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigurationError(
                    f"banned_tokens must hold int token ids; got {value!r} ({type(value).__name__})"
                )
        ids = torch.tensor(list(banned_tokens), dtype=torch.long)
    if ids.numel() == 0:
        return None
    outside = ids[(ids < 0) | (ids >= vocab_size)]
    if outside.numel():
        raise ConfigurationError(
            f"banned_tokens: id {int(outside[0])} is outside the vocabulary [0, {vocab_size})"
        )
    if ids.unique().numel() == vocab_size:
        raise ConfigurationError(
            f"banned_tokens bans all {vocab_size} tokens of the vocabulary: none is left to sample"
        )
    return ids


def sample_next(
    logits: Tensor,
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    banned_tokens: Sequence[int] | Tensor | None = None,
) -> Tensor:
    """One token id per row of ``logits`` (``[B, vocab]``): the argmax if ``temperature``
    is 0, else a draw from ``softmax(logits / temperature)`` restricted to the smallest
    set of most likely tokens whose probabilities reach ``top_p`` (renormalised; tokens
    of equal probability enter that set lowest id first; ``top_p = 1`` keeps every
    token). ``banned_tokens`` (ids, :func:`check_banned_tokens`) get the logit ``-inf``
    first, in a copy: they are never drawn and the others' probabilities are theirs
    renormalised (``logits`` itself is left unchanged)."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise ConfigurationError(f"temperature must be a number >= 0; got {temperature!r}")
    if not temperature >= 0.0:
        raise ConfigurationError(f"temperature must be a number >= 0; got {temperature!r}")
    if isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0.0 < top_p <= 1.0:
        raise ConfigurationError(f"top_p must be in (0, 1]; got {top_p!r}")
    banned = check_banned_tokens(banned_tokens, logits.shape[-1])
    if banned is not None:
        banned = banned.to(logits.device)
        logits = logits.index_fill(-1, banned, float("-inf"))  # a copy
    if temperature == 0:
        return logits.argmax(-1)
    # the largest logit first subtracted: a tiny temperature gives 0 and -inf, not inf - inf
    top = logits.double().amax(-1, keepdim=True)
    probs = torch.softmax((logits.double() - top) / temperature, -1)
    ordered, order = probs.sort(dim=-1, descending=True, stable=True)
    if top_p < 1.0:  # at 1, rounding in the sum must not drop the least likely tokens
        before = ordered.cumsum(-1) - ordered  # mass of the more likely tokens
        ordered = ordered.masked_fill(before >= top_p, 0.0)  # the first token always stays
    pick = torch.multinomial(ordered, 1, generator=generator)
    return order.gather(-1, pick).squeeze(-1)


@register_model("spike_gpt")
def spike_gpt(preset: str | None = None, **kwargs: Any) -> SpikeGPT:
    """SpikeGPT (:class:`SpikeGPT`): ``preset`` ``"small"`` (12 × 512) or ``"medium"``
    (18 × 768), context 1024, or None (the class's defaults); kwargs override."""
    if preset is not None and preset not in PRESETS:
        raise ConfigurationError(
            f"unknown SpikeGPT preset {preset!r}; available: {', '.join(PRESETS)}"
        )
    return SpikeGPT(**{**(PRESETS[preset] if preset else {}), **kwargs})
