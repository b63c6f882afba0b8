"""A checkpoint's ``generation_config`` as the defaults of
:meth:`~spikeflow.conversion.llm.SpikingCausalLM.generate`, as ``transformers`` (5.x)
applies it.

``transformers``' ``generate`` takes each option from the call when given, else from the
model's ``generation_config`` when it sets one (not None), else from its global defaults
(``do_sample=False``, ``top_k=50``, ...). So an instruct checkpoint's ``do_sample=True,
temperature=0.7, top_p=0.8, repetition_penalty=1.05`` make a plain ``generate(ids)``
sample. Sampling options then apply only when sampling and beam options only with beams:
``transformers`` ignores the config's others (a call that gives one without them is
still refused, :func:`~spikeflow.conversion.llm_generate.check_decoding_options`). The
length: ``max_new_tokens`` from the call, else the config's, else the config's
``max_length`` minus the prompt's, else 20 new tokens (within ``max_position_embeddings``).
"""

from __future__ import annotations

import re
import warnings

from spikeflow.errors import ConfigurationError

__all__ = [
    "DEFAULT_NEW_TOKENS",
    "UNAPPLIED",
    "name_config_options",
    "resolve_generation_config",
]

#: ``transformers``' new tokens when neither the call nor the config sets a length.
DEFAULT_NEW_TOKENS = 20
_SAMPLING_ONLY = ("temperature", "top_k", "top_p", "min_p", "typical_p", "epsilon_cutoff")
_SAMPLING_ONLY += ("eta_cutoff",)
_BEAMS_ONLY = ("length_penalty", "early_stopping")
#: ``generation_config`` options ``generate`` does not apply, with ``transformers``'
#: values that change nothing; set to another, they are warned about.
UNAPPLIED = {
    "min_length": 0,
    "bad_words_ids": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "sequence_bias": None,
    "exponential_decay_length_penalty": None,
    "guidance_scale": None,
    "top_h": None,
    "penalty_alpha": None,
    "num_beam_groups": 1,
    "diversity_penalty": 0.0,
    "renormalize_logits": False,
    "remove_invalid_values": False,
    "stop_strings": None,
    "constraints": None,
    "force_words_ids": None,
    "watermarking_config": None,  # a logits processor after all the others
    "max_time": None,  # a stopping criterion: fewer tokens when the time runs out
    "token_healing": False,  # rewrites the prompt's tail (needs a tokenizer)
}


def _unapplied(generation_config: object) -> list[str]:
    """``name=value`` of the options the config sets that ``generate`` leaves out."""
    left = []
    for name, default in UNAPPLIED.items():
        value = getattr(generation_config, name, None)
        if value is not None and value != default:
            left.append(f"{name}={value!r}")
    return left


def resolve_generation_config(
    generation_config: object,
    given: dict[str, object],
    max_new_tokens: int | None,
    num_return_sequences: int | None,
    prompt_length: int,
    max_positions: int | None,
) -> tuple[dict[str, object], int, int]:
    """The decoding options, the number of new tokens and of sequences per prompt, each
    from the call when given (not None), else from ``generation_config`` (None: no
    config), else ``transformers``' defaults (left as None in the options: the checker
    fills them in). A config's options that ``generate`` cannot apply
    (:data:`UNAPPLIED`) are warned about by name."""
    config = generation_config

    def from_config(name: str) -> object:
        return None if config is None else getattr(config, name, None)

    options = dict(given)
    taken = []
    for name, value in given.items():
        if value is None and from_config(name) is not None:
            options[name] = from_config(name)
            taken.append(name)
    sampling = options.get("do_sample") is True
    beams = (options.get("num_beams") or 1) > 1
    for name in taken:  # transformers ignores these without sampling / beams
        if (name in _SAMPLING_ONLY and not sampling) or (name in _BEAMS_ONLY and not beams):
            options[name] = None
    if num_return_sequences is None:
        num_return_sequences = from_config("num_return_sequences") or 1
    if max_new_tokens is None:
        max_new_tokens = from_config("max_new_tokens")
    if max_new_tokens is None:
        total = from_config("max_length")
        if total is None:
            total = prompt_length + DEFAULT_NEW_TOKENS
            if max_positions is not None:
                total = min(total, max_positions)
        max_new_tokens = total - prompt_length
        if max_new_tokens < 1:
            raise ConfigurationError(
                f"max_new_tokens not given: the generation_config's max_length ({total}, "
                f"prompt included) leaves no room after the {prompt_length} prompt tokens; "
                "pass max_new_tokens"
            )
    if config is not None:
        left = _unapplied(config)
        if left:
            warnings.warn(
                f"the model's generation_config sets {', '.join(left)}, which transformers' "
                "generate would apply and SpikingCausalLM.generate does not",
                stacklevel=4,  # the caller of generate (under torch.no_grad's wrapper)
            )
    return options, max_new_tokens, num_return_sequences


def name_config_options(
    error: ConfigurationError, call: dict[str, object], resolved: dict[str, object]
) -> ConfigurationError:
    """``error`` (an option refused) with a note naming the options it mentions that
    the call left unset (None in ``call``) and the ``generation_config`` supplied (set
    in ``resolved``): a refused ``temperature=0.0`` the user never passed is the
    checkpoint's."""
    named = [
        name
        for name, value in call.items()
        if value is None
        and resolved.get(name) is not None
        and re.search(rf"\b{name}\b", str(error))
    ]
    if not named:
        return error
    return ConfigurationError(f"{error} ({', '.join(named)}: from the model's generation_config)")
