"""The rarer score processors of :meth:`~spikeflow.conversion.llm.SpikingCausalLM.generate`,
each as ``transformers``' (5.x) of the same option: n-gram bans (``no_repeat_ngram_size``),
a minimum of new tokens before an end (``min_new_tokens``), and the sampling filters
typical-p (``typical_p``), epsilon (``epsilon_cutoff``) and eta (``eta_cutoff``)
sampling. :func:`~spikeflow.conversion.llm_generate.process_scores` runs them in
``transformers``' order: the n-gram ban after the repetition penalty, then the minimum
of new tokens, and the three filters after min-p.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "apply_epsilon_cutoff",
    "apply_eta_cutoff",
    "apply_min_new_tokens",
    "apply_no_repeat_ngram",
    "apply_typical_p",
]


def apply_no_repeat_ngram(scores: Tensor, tokens: Tensor, size: int) -> Tensor:
    """``-inf`` for each token that would end an n-gram of ``size`` tokens already in
    the row of ``tokens [N, L]`` (all of it: prompt, its padding and new tokens, as
    ``transformers``)."""
    length = tokens.shape[1]
    if length < size:
        return scores
    grams = tokens.unfold(1, size, 1)  # [N, L - size + 1, size]
    tail = tokens[:, length - size + 1 :]  # the last size - 1 tokens
    seen = (grams[..., :-1] == tail[:, None]).all(-1)  # n-grams that start like the tail
    vocab = scores.shape[-1]
    banned = torch.zeros(scores.shape[0], vocab + 1, dtype=torch.bool, device=scores.device)
    banned.scatter_(1, torch.where(seen, grams[..., -1].clamp(max=vocab), vocab), True)
    return scores.masked_fill(banned[:, :vocab], float("-inf"))


def apply_min_new_tokens(scores: Tensor, eos: Tensor, new: int, minimum: int) -> Tensor:
    """``-inf`` on the ``eos`` ids while fewer than ``minimum`` tokens are new."""
    if new >= minimum:
        return scores
    is_eos = torch.isin(torch.arange(scores.shape[-1], device=scores.device), eos)
    return scores.masked_fill(is_eos, float("-inf"))


def _keep_top(drop: Tensor, scores: Tensor, keep: int) -> Tensor:
    """``drop`` without the ``keep`` best scores of each row (ties with the last kept)."""
    kth = torch.topk(scores, min(keep, scores.shape[-1])).values[..., -1:]
    return drop & (scores < kth)


def apply_typical_p(scores: Tensor, mass: float, keep: int = 1) -> Tensor:
    """Locally typical sampling: the tokens sorted by ``|-log p - H|`` (``H`` the row's
    entropy) are kept until their probability reaches ``mass`` (that token included;
    at least ``keep``)."""
    log_p = scores.log_softmax(-1)
    entropy = -(log_p * log_p.exp()).nansum(-1, keepdim=True)
    distance, order = torch.sort((-log_p - entropy).abs(), descending=False)
    mass_so_far = scores.gather(-1, order).softmax(-1).cumsum(-1)
    last = (mass_so_far < mass).sum(1).clamp(max=distance.shape[-1] - 1)
    drop = distance > distance.gather(1, last[:, None])
    drop[..., :keep] = False
    return scores.masked_fill(drop.scatter(1, order, drop), float("-inf"))


def apply_epsilon_cutoff(scores: Tensor, epsilon: float, keep: int = 1) -> Tensor:
    """``-inf`` where a token's probability is below ``epsilon`` (the ``keep`` best
    stay)."""
    drop = _keep_top(scores.softmax(-1) < epsilon, scores, keep)
    return scores.masked_fill(drop, float("-inf"))


def apply_eta_cutoff(scores: Tensor, eta: float, keep: int = 1) -> Tensor:
    """``-inf`` where a token's probability is below ``min(eta, sqrt(eta)·exp(-H))``
    (``H`` the row's entropy; eta sampling), the ``keep`` best staying. ``eta`` is
    taken as a float32 tensor, as ``transformers`` holds it."""
    eta_t = torch.tensor(eta, device=scores.device)
    entropy = torch.distributions.Categorical(logits=scores).entropy()
    cut = torch.min(eta_t, torch.sqrt(eta_t) * torch.exp(-entropy))[..., None]
    drop = _keep_top(scores.softmax(-1) < cut, scores, keep)
    return scores.masked_fill(drop, float("-inf"))
