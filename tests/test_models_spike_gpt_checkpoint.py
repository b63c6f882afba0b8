"""Loading SpikeGPT's published checkpoints (spikeflow.models.spike_gpt_checkpoint,
docs/language.md): a random state dict in the official layout (ridgerchu/SpikeGPT's
``GPT`` of ``src/model.py``: keys, [1, 1, C] token-shift mixes, the decay stored as
trained) run through a transcription of that model's forward, written here from its
equations, and through the converted spike_gpt: the same logits in float64."""

from __future__ import annotations

import argparse
import re

import pytest
import torch
from torch.nn import functional as F

from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.models.spike_gpt import SpikeGPT
from spikeflow.models.spike_gpt_checkpoint import (
    convert_spikegpt_state_dict,
    load_spikegpt,
    spikegpt_sizes,
)

VOCAB, WIDTH, LAYERS = 50, 16, 3


def official_state_dict(seed: int = 0, dtype=torch.float64) -> dict[str, torch.Tensor]:
    """Random tensors under SpikeGPT's own keys and shapes, scaled so the neurons fire."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0, shift=0.0):
        return torch.randn(*shape, generator=g, dtype=dtype) * scale + shift

    def unit(*shape):
        return torch.rand(*shape, generator=g, dtype=dtype)

    c, h = WIDTH, 4 * WIDTH
    sd = {"emb.weight": rand(VOCAB, c)}
    for i in range(LAYERS):
        b = f"blocks.{i}."
        norms = ["ln0", "ln1", "ln2"] if i == 0 else ["ln1", "ln2"]
        for ln in norms:
            sd[b + ln + ".weight"] = rand(c, scale=0.2, shift=1.0)
            sd[b + ln + ".bias"] = rand(c, scale=0.1)
        sd[b + "att.time_decay"] = unit(c) * 5 - 3  # w = -exp(.) from -e^-3 to -e^2
        sd[b + "att.time_first"] = rand(c, scale=0.5)
        for m in "kvr":
            sd[b + f"att.time_mix_{m}"] = unit(1, 1, c)
        for name in ["key", "value", "receptance", "output"]:
            sd[b + f"att.{name}.weight"] = rand(c, c, scale=3 / c**0.5)
        for m in "kr":
            sd[b + f"ffn.time_mix_{m}"] = unit(1, 1, c)
        sd[b + "ffn.key.weight"] = rand(h, c, scale=1 / c**0.5)
        sd[b + "ffn.receptance.weight"] = rand(c, c, scale=1 / c**0.5)
        sd[b + "ffn.value.weight"] = rand(c, h, scale=8 / h**0.5)
    sd["ln_out.weight"] = rand(c, scale=0.2, shift=1.0)
    sd["ln_out.bias"] = rand(c, scale=0.1)
    sd["head.weight"] = rand(VOCAB, c, scale=1 / c**0.5)
    return sd


# --- SpikeGPT's training forward, batch-first [B, T, C] as in its code -------------------


def _ln(x, sd, name):
    return F.layer_norm(x, x.shape[-1:], sd[name + ".weight"], sd[name + ".bias"])


def _previous(x):  # their ZeroPad2d((0, 0, 1, -1)): one token later, zeros first
    return torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], 1)


def _wkv(time_decay, time_first, k, v):
    """Their kernel's output written as its sum: decay w = -exp(time_decay) per step
    back, bonus time_first on the current token."""
    w = -torch.exp(time_decay)
    out = torch.empty_like(k)
    for t in range(k.shape[1]):
        age = torch.arange(t - 1, -1, -1, dtype=k.dtype)[:, None]  # t-1-i for i < t
        weight = torch.exp(age * w + k[:, :t])  # [B, t, C]
        now = torch.exp(time_first + k[:, t])
        out[:, t] = ((weight * v[:, :t]).sum(1) + now * v[:, t]) / (weight.sum(1) + now)
    return out


def _lif(x):
    """SpikingJelly's MultiStepLIFNode(tau=2, v_threshold=1, v_reset=0) over T (dim 1):
    charge v + (x - v)/2, spike at >= 1, hard reset to 0."""
    v, spikes = torch.zeros_like(x[:, 0]), []
    for t in range(x.shape[1]):
        h = v + (x[:, t] - v) / 2.0
        s = (h >= 1.0).to(x.dtype)
        spikes.append(s)
        v = h * (1 - s)
    return torch.stack(spikes, 1)


def _mix(x, prev, mu):
    return x * mu + prev * (1 - mu)


def official_forward(sd, idx, record=None):
    """``idx`` [B, T] → logits [B, T, V], as SpikeGPT's GPT.forward (eval: no dropout)."""
    x = (sd["emb.weight"][idx] >= 0).to(sd["emb.weight"].dtype)  # ATan(): step forward
    for i in range(LAYERS):
        b = f"blocks.{i}."
        if i == 0:
            x = _ln(x, sd, b + "ln0")
        a = _ln(x, sd, b + "ln1")
        prev = _previous(a)
        k = _mix(a, prev, sd[b + "att.time_mix_k"]) @ sd[b + "att.key.weight"].T
        v = _mix(a, prev, sd[b + "att.time_mix_v"]) @ sd[b + "att.value.weight"].T
        r = _mix(a, prev, sd[b + "att.time_mix_r"]) @ sd[b + "att.receptance.weight"].T
        y = torch.sigmoid(r) * _wkv(sd[b + "att.time_decay"], sd[b + "att.time_first"], k, v)
        att = y @ sd[b + "att.output.weight"].T
        s1 = _lif(att)
        x = x + s1
        f = _ln(x, sd, b + "ln2")
        prev = _previous(f)
        hid = torch.relu(_mix(f, prev, sd[b + "ffn.time_mix_k"]) @ sd[b + "ffn.key.weight"].T)
        kv = hid.square() @ sd[b + "ffn.value.weight"].T
        gate = torch.sigmoid(
            _mix(f, prev, sd[b + "ffn.time_mix_r"]) @ sd[b + "ffn.receptance.weight"].T
        )
        s2 = _lif(gate * kv)
        x = x + s2
        if record is not None:
            record.append((s1.mean().item(), s2.mean().item(), att, gate * kv))
    return _ln(x, sd, "ln_out") @ sd["head.weight"].T


# -----------------------------------------------------------------------------------------


def test_converted_model_gives_the_official_forwards_logits():
    sd = official_state_dict()
    idx = torch.randint(0, VOCAB, (3, 24), generator=torch.Generator().manual_seed(1))
    inside: list = []
    want = official_forward(sd, idx, inside)
    # the neurons of every branch fire, but not always: the spikes matter
    assert all(0.05 < r < 0.95 for block in inside for r in block[:2]), inside
    model = load_spikegpt(sd, context=64, dtype=torch.float64)
    branches: list[torch.Tensor] = []
    for block in model.blocks:  # the real-valued branch outputs, before the neurons
        for mixer in (block.att, block.ffn):
            mixer.register_forward_hook(lambda m, i, out: branches.append(out.transpose(0, 1)))
    assert spikegpt_sizes(sd) == {"vocab_size": VOCAB, "d_model": WIDTH, "n_layers": LAYERS,
                                  "ffn_mult": 4}  # fmt: skip
    got = model(idx.t()).transpose(0, 1)  # spikeflow is time-major
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    for i, (_, _, att, ffn) in enumerate(inside):
        torch.testing.assert_close(branches[2 * i], att, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(branches[2 * i + 1], ffn, rtol=1e-10, atol=1e-10)
    # the decay is copied as stored (their kernel's -exp is spikeflow's exp)
    assert torch.equal(model.blocks[1].att.time_decay, sd["blocks.1.att.time_decay"])


def test_file_prefix_and_half_precision(tmp_path):
    sd = official_state_dict(seed=2)
    path = tmp_path / "SpikeGPT-tiny.pth"
    torch.save({"module." + k: v.half() for k, v in sd.items()}, path)
    with pytest.warns(UserWarning, match=r"removed the prefix 'module\.' that all 60 keys"):
        model = load_spikegpt(path, context=32)
    assert model.emb.weight.dtype == torch.get_default_dtype() and not model.training
    torch.testing.assert_close(model.head.weight, sd["head.weight"].half().float())
    mix = model.blocks[2].ffn.time_mix_r
    assert torch.equal(mix, sd["blocks.2.ffn.time_mix_r"].half().float().reshape(-1))


def test_lightning_style_checkpoint(tmp_path):
    # {'state_dict': ..., 'epoch': ...}: load_spikegpt reads the weights from it (file or
    # dict); the converter, given a state dict's name, refuses it saying what to pass
    sd = official_state_dict(seed=3)
    ckpt = {
        "epoch": 4,
        "global_step": 1200,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": sd,
        "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": []}],
    }
    path = tmp_path / "epoch=4-step=1200.ckpt"
    torch.save(ckpt, path)
    expected = load_spikegpt(sd, context=16).state_dict()
    for source in (path, ckpt):
        got = load_spikegpt(source, context=16).state_dict()
        assert got.keys() == expected.keys()
        assert all(torch.equal(got[k], expected[k]) for k in expected)
    hint = r"training checkpoint.*'epoch', 'global_step'.*pass ckpt\['state_dict'\]"
    with pytest.raises(ConfigurationError, match=hint):
        convert_spikegpt_state_dict(ckpt)
    with pytest.raises(ConfigurationError, match=hint):
        spikegpt_sizes(ckpt)
    # only that shape is unwrapped: a tensor beside 'state_dict' is no such checkpoint
    odd = {"state_dict": sd, "emb.weight": sd["emb.weight"]}
    with pytest.raises(ConfigurationError, match=r"entry 'state_dict' is not a tensor"):
        load_spikegpt(odd)


def test_a_lightning_module_prefix_is_removed_only_from_every_key(tmp_path):
    # A LightningModule holding the network as `self.model` saves `model.emb.weight`,
    # ...: one prefix on every key is removed, named in a warning, once per call
    sd = official_state_dict(seed=5)
    prefixed = {"model." + k: v for k, v in sd.items()}
    ckpt = {"epoch": 2, "global_step": 40, "state_dict": prefixed}
    path = tmp_path / "epoch=2-step=40.ckpt"
    torch.save(ckpt, path)
    expected = load_spikegpt(sd, context=16).state_dict()
    for source in (path, ckpt, prefixed):
        with pytest.warns(UserWarning, match=r"removed the prefix 'model\.'") as caught:
            got = load_spikegpt(source, context=16).state_dict()
        assert len(caught) == 1 and "'model.emb.weight'" in str(caught[0].message)
        assert got.keys() == expected.keys()
        assert all(torch.equal(got[k], expected[k]) for k in expected)
    with pytest.warns(UserWarning, match=r"'model\.'"):
        converted = convert_spikegpt_state_dict(prefixed)
    assert converted.keys() == convert_spikegpt_state_dict(sd).keys()
    with pytest.warns(UserWarning, match=r"'model\.'"):
        assert spikegpt_sizes(prefixed) == spikegpt_sizes(sd)
    # not on every key (a loss module's buffer beside the network): nothing removed,
    # the error names the prefixed key and a key without it
    beside = {**prefixed, "criterion.weight": torch.ones(VOCAB)}
    hint = r"'model\.emb\.weight' looks like it under a prefix 'model\.'.*criterion\.weight"
    with pytest.raises(ConfigurationError, match=hint):
        load_spikegpt(beside)
    # wrappers nested (Lightning holding a torch.compile'd network: `model._orig_mod.`;
    # one level removed left `_orig_mod.emb.weight`, "under a prefix that not every key
    # carries (not [])"): the whole common prefix is removed, named once
    for prefix in ("model._orig_mod.", "model.model.", "module.model._orig_mod."):
        nested = {prefix + k: v for k, v in sd.items()}
        with pytest.warns(UserWarning, match=rf"removed the prefix {re.escape(repr(prefix))} "
                          "that all 60 keys") as caught:  # fmt: skip
            got = load_spikegpt(nested, context=16).state_dict()
        assert len(caught) == 1
        assert all(torch.equal(got[k], expected[k]) for k in expected)
        for read in (convert_spikegpt_state_dict, spikegpt_sizes):
            with pytest.warns(UserWarning, match=re.escape(repr(prefix))) as caught:
                read(nested)
            assert len(caught) == 1
    # mixed wrappers (no prefix every key carries): nothing removed, the first named
    mixed = {("model." if "blocks" in k else "module.") + k: v for k, v in sd.items()}
    with pytest.raises(ConfigurationError, match=r"'model\.emb|'module\.emb"):
        load_spikegpt(mixed)
    # SpikeGPT's own first names are no prefix: only blocks (no emb) are not stripped
    blocks = {k: v for k, v in sd.items() if k.startswith("blocks.")}
    with pytest.raises(ConfigurationError, match=r"no 2-D 'emb\.weight'.*'blocks\.0\."):
        spikegpt_sizes(blocks)


def test_checkpoint_holding_python_objects_names_the_file_and_the_way(tmp_path):
    # Lightning's save_hyperparameters() keeps e.g. an argparse.Namespace, which the
    # tensors-only load refuses: the error names the file and how to load it (trusted)
    sd = official_state_dict(seed=4)
    ckpt = {"epoch": 1, "state_dict": sd, "hyper_parameters": {"args": argparse.Namespace(lr=1)}}
    path = tmp_path / "last.ckpt"
    torch.save(ckpt, path)
    hint = r"last\.ckpt.*not only tensors \(argparse\.Namespace.*trust.*weights_only=False.*pass"
    with pytest.raises(ConfigurationError, match=hint):
        load_spikegpt(path, context=16)
    loaded = torch.load(path, map_location="cpu", weights_only=False)  # the way it names
    got = load_spikegpt(loaded, context=16).state_dict()
    expected = load_spikegpt(sd, context=16).state_dict()
    assert all(torch.equal(got[k], expected[k]) for k in expected)


def test_other_layouts_are_refused_naming_the_key(tmp_path):
    sd = official_state_dict()
    missing = dict(sd)
    del missing["blocks.1.att.time_first"]
    with pytest.raises(ConfigurationError, match=r"missing key 'blocks.1.att.time_first'"):
        convert_spikegpt_state_dict(missing)
    extra = {**sd, "blocks.0.att.bonus": torch.zeros(WIDTH)}
    with pytest.raises(ConfigurationError, match=r"unexpected key 'blocks.0.att.bonus'"):
        convert_spikegpt_state_dict(extra)
    wrong = {**sd, "blocks.2.att.key.weight": torch.zeros(WIDTH, WIDTH + 1)}
    with pytest.raises(ShapeError, match=r"'blocks.2.att.key.weight' has shape \(16, 17\)"):
        convert_spikegpt_state_dict(wrong)
    mix = {**sd, "blocks.0.att.time_mix_v": torch.zeros(2, 1, WIDTH)}
    with pytest.raises(ShapeError, match=r"'blocks.0.att.time_mix_v' must be \[1, 1, 16\]"):
        convert_spikegpt_state_dict(mix)
    pre = {**sd, "blocks.0.ffnPre.key.weight": torch.zeros(4 * WIDTH, WIDTH)}
    with pytest.raises(ConfigurationError, match=r"'blocks.0.ffnPre.key.weight'.*RWKV-ffnPre"):
        convert_spikegpt_state_dict(pre)
    with pytest.raises(ConfigurationError, match=r"head_q.*head-QK"):
        convert_spikegpt_state_dict({**sd, "head_q.weight": torch.zeros(4, WIDTH)})
    with pytest.raises(ConfigurationError, match=r"no 2-D 'emb\.weight'"):
        convert_spikegpt_state_dict({"weight": torch.zeros(3, 3)})
    with pytest.raises(ConfigurationError, match="'d_model' comes from the checkpoint"):
        load_spikegpt(sd, d_model=8)
    nan = {k: v.clone() for k, v in sd.items()}
    nan["blocks.1.att.time_decay"][3] = float("nan")
    with pytest.raises(ConfigurationError, match=r"'blocks.1.att.time_decay' holds 1 non-fin"):
        load_spikegpt(nan)
    inf = {**sd, "head.weight": sd["head.weight"].clone().fill_(float("inf"))}
    with pytest.raises(ConfigurationError, match=r"'head.weight' holds 800 non-finite"):
        convert_spikegpt_state_dict(inf)
    empty = {**sd, "blocks.0.ffn.key.weight": torch.zeros(0, WIDTH)}  # ffn_mult 0
    with pytest.raises(ConfigurationError, match=r"'blocks.0.ffn.key.weight' must be.*\(0, 16\)"):
        spikegpt_sizes(empty)
    with pytest.raises(ConfigurationError, match=r"dtype must be a floating-point.*int64"):
        load_spikegpt(sd, dtype=torch.int64)
    with pytest.raises(FileNotFoundError, match=r"SpikeGPT-216M\.pth"):
        load_spikegpt(tmp_path / "SpikeGPT-216M.pth")


def test_the_published_216m_layout_is_read_as_the_medium_preset():
    # SpikeGPT-216M.pth's shapes (18 x 768, GPT-NeoX's 50277 tokens), on the meta device
    with torch.device("meta"):
        ours = SpikeGPT(vocab_size=50277, d_model=768, n_layers=18, context=1)
    official = {
        k: v.reshape(1, 1, -1) if ".time_mix_" in k else v for k, v in ours.state_dict().items()
    }
    assert official["blocks.17.att.time_mix_k"].shape == (1, 1, 768)
    sizes = spikegpt_sizes(official)
    assert sizes == {"vocab_size": 50277, "d_model": 768, "n_layers": 18, "ffn_mult": 4}
    converted = convert_spikegpt_state_dict(official)
    assert sum(v.numel() for v in converted.values()) == 215_399_424  # the paper's "216M"
