"""examples/spiking_lstm_text.py (docs/layers.md, "Spiking LSTMs on text"): a padded
batch of names gives each name's own logits, the names task learns a layout written
here, a missing root is one line and status 2, and the character-level language model
on a slice of Python's documentation (both kinds of LSTM, the same size) learns."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import load_example
from spikeflow.data import NamesByLanguage, encode_name, pad_collate
from spikeflow.errors import ConfigurationError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("kind", ["spiking", "lstm"])
def test_a_padded_batch_gives_each_names_own_logits(kind, float64):
    module = load_example("spiking_lstm_text")
    model = module.NameClassifier(kind, 24, 5)
    names = ["Li", "Abramovich", "Xu", "Nowak"]
    x, mask = pad_collate([encode_name(n).double() for n in names], time_major=True)
    assert mask.sum(0).tolist() == [2, 10, 2, 5]
    batched = model(x, mask)
    for i, name in enumerate(names):
        one = encode_name(name).double()[:, None]
        alone = model(one, torch.ones(len(name), 1, dtype=torch.bool))
        torch.testing.assert_close(batched[i], alone[0], rtol=0, atol=1e-12)
    assert batched.shape == (4, 5)


def _write_names(root: Path) -> None:
    """Three languages told apart by their endings, 60 names each."""
    (root / "names").mkdir(parents=True)
    stems = ["Bar", "Kol", "Mir", "Dan", "Pet", "Sav", "Tom", "Ruz", "Lem", "Gor"]
    for language, ending in [("Alpha", "ski"), ("Beta", "son"), ("Gamma", "ez")]:
        lines = [f"{s}{v}{ending}" for s in stems for v in ["a", "o", "e", "i", "u", "y"]]
        (root / "names" / f"{language}.txt").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("kind", ["spiking", "lstm"])
def test_the_names_task_learns_languages_told_by_their_endings(kind, tmp_path):
    module = load_example("spiking_lstm_text")
    _write_names(tmp_path)
    out = tmp_path / "names.json"
    argv = ["names", "--root", str(tmp_path), "--model", kind, "--hidden", "32",
            "--epochs", "6", "--batch", "16", "--lr", "1e-2", "--out", str(out)]  # fmt: skip
    (result,) = module.main(argv)
    assert json.loads(out.read_text()) == [result]
    test = NamesByLanguage(tmp_path, "test")
    assert result["languages"] == 3 and result["test_names"] == len(test) == 36
    assert result["chance"] == round(1 / 3, 4) and result["largest_language_share"] == 0.3333
    assert result["test_accuracy"] >= 0.8, result  # chance 1/3


def test_a_missing_names_root_is_one_line_and_status_2(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(EXAMPLES.parent / "src"), env.get("PYTHONPATH", "")])
    run = subprocess.run(
        [sys.executable, str(EXAMPLES / "spiking_lstm_text.py"), "names", "--root", "data"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr and run.stderr.count("\n") == 1, run.stderr
    absolute = tmp_path.resolve() / "data" / "names"
    assert run.stderr.startswith(
        f"spiking_lstm_text.py: error: names data not found: data/names (absolute: "
        f"{absolute}) is not a folder"
    ), run.stderr
    assert "download.pytorch.org/tutorial/data.zip" in run.stderr


def test_the_corpus_split_and_vocabulary():
    module = load_example("spiking_lstm_text")
    train, val, vocabulary = module.corpus()
    from pydoc_data.topics import topics

    text = "".join(topics[key] for key in sorted(topics))
    assert len(train) + len(val) == len(text) and len(train) == int(0.9 * len(text))
    assert "".join(vocabulary[i] for i in val[:50].tolist()) == text[len(train) :][:50]
    assert vocabulary == "".join(sorted(set(text))) and int(train.max()) < len(vocabulary)
    small = module.corpus(1000)
    assert len(small[0]) + len(small[1]) == 1000


def test_the_language_models_have_one_size_and_learn(tmp_path):
    module = load_example("spiking_lstm_text")
    argv = ["charlm", "--chars", "20000", "--steps", "80", "--hidden", "48", "--batch", "16",
            "--context", "32", "--lr", "1e-2", "--log-every", "40"]  # fmt: skip
    spiking, lstm = module.main(argv)
    vocab = len(module.corpus(20000)[2])
    # 4 gates: W_ih, W_hh and two biases; then the head
    size = 4 * 48 * (vocab + 48) + 8 * 48 + 48 * vocab + vocab
    assert spiking["parameters"] == lstm["parameters"] == size
    assert 0.0 < spiking["firing_rate"] < 1.0 and "firing_rate" not in lstm
    assert spiking["damping"] == 0.1 and "damping" not in lstm  # the default
    # the damped surrogate keeps the BPTT gradient bounded (this run: about 1; with the
    # undamped Erf, --damping 1, it reaches about 500 here and 1e13 on the full task)
    assert spiking["max_grad_norm"] < 20 and lstm["max_grad_norm"] < 20, (spiking, lstm)
    train, val, _ = module.corpus(20000)
    unigram = round(module.unigram_bits(train, val, vocab), 4)
    assert spiking["unigram_val_bits_per_char"] == lstm["unigram_val_bits_per_char"] == unigram
    # uniform guessing is log2(vocab) bits per character: both learned below it
    assert lstm["val_bits_per_char"] < math.log2(vocab) - 1.5, lstm
    assert spiking["val_bits_per_char"] < math.log2(vocab) - 1.5, spiking


def test_unigram_bits_is_the_smoothed_training_frequencies_on_val_after_its_first():
    module = load_example("spiking_lstm_text")
    train, val = torch.tensor([0, 0, 1]), torch.tensor([2, 0, 1])
    # add-one counts [3, 2, 1] of 6; val[0] is not scored (nothing predicts it)
    expected = -(math.log2(3 / 6) + math.log2(2 / 6)) / 2
    assert module.unigram_bits(train, val, 3) == pytest.approx(expected, rel=1e-12)


def test_damped_erf_is_erf_with_its_derivative_scaled(float64):
    module = load_example("spiking_lstm_text")
    from spikeflow.layers import SpikingLSTM
    from spikeflow.surrogate import Erf

    x = torch.linspace(-2, 2, 41, requires_grad=True)
    spikes = module.DampedErf(2.0, 0.3)(x)
    spikes.sum().backward()
    assert torch.equal(spikes, Erf()(x))  # the same Heaviside forward
    hand = 0.3 * (2.0 / math.sqrt(math.pi)) * torch.exp(-4.0 * x.detach() ** 2)
    torch.testing.assert_close(x.grad, hand, rtol=1e-12, atol=0)

    def grads(damping, steps):
        torch.manual_seed(3)
        if damping is None:
            lstm = SpikingLSTM(5, 7, 1)  # the layer's default Erf
        else:
            lstm = SpikingLSTM(5, 7, 1, surrogate_function1=module.DampedErf(2.0, damping))
        torch.manual_seed(4)
        y, _ = lstm(torch.randn(steps, 3, 5) * 3)
        (y * torch.randn(y.shape)).sum().backward()
        return y, [p.grad for p in lstm.parameters()]

    y_erf, g_erf = grads(None, 6)
    y_one, g_one = grads(1.0, 6)
    assert torch.equal(y_erf, y_one) and all(map(torch.equal, g_erf, g_one))
    # one step from zero states: one gate derivative on every path, so the factor
    _, g_step = grads(1.0, 1)
    _, g_damped = grads(0.25, 1)
    assert any(float(g.abs().max()) > 0 for g in g_step)
    for damped, plain in zip(g_damped, g_step):
        torch.testing.assert_close(damped, 0.25 * plain, rtol=1e-12, atol=1e-15)
    with pytest.raises(ConfigurationError, match="DampedErf: damping must be in"):
        module.DampedErf(2.0, 0.0)
