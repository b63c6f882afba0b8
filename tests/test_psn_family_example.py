"""examples/psn_family_digits.py (docs/neuron_zoo_parallel.md): one command gives the
table of the PSN family against LIF/PLIF/KLIF/GLIF on the digits read as columns."""

from __future__ import annotations

import pytest
import tomllib

from conftest import load_example

TINY = ["--epochs", "1", "--channels", "4", "--k", "2"]


def _config(folder):
    return tomllib.loads((folder / "config.toml").read_text())


def test_runs_prints_the_table_and_repeats_with_a_seed(capsys, tmp_path):
    pytest.importorskip("sklearn", reason="scikit-learn (the 'examples' extra) is needed")
    module = load_example("psn_family_digits")
    variants = ["masked_psn_none", "klif"]
    first = module.main(["--neurons", *variants, "--seeds", "3", *TINY,
                         "--output-dir", str(tmp_path / "a")])  # fmt: skip
    again = module.main(["--neurons", *variants, "--seeds", "3", *TINY,
                         "--output-dir", str(tmp_path / "b")])  # fmt: skip
    assert list(first) == variants
    assert [acc for acc, _ in first["klif"]] == [acc for acc, _ in again["klif"]]
    assert [a for a, _ in first["masked_psn_none"]] == [a for a, _ in again["masked_psn_none"]]
    out = capsys.readouterr().out
    assert "| variant | seed 3 | mean | spread | s/run |" in out
    acc = 100 * first["klif"][0][0]
    assert f"| klif | {acc:.2f} | {acc:.2f} | 0.00 |" in out

    # each run is the set-up the docs state: T = 8 columns, the paper's recipe, the
    # variant's neuron arguments and mask schedule
    masked = _config(tmp_path / "a" / "masked_psn_none-seed3")
    assert masked["T"] == 8 and masked["seed"] == 3 and masked["model"] == "psn_seqcifar"
    assert masked["neuron"] == "masked_psn" and masked["mask_schedule"] == "none"
    assert masked["neuron_kwargs"] == {"k": 2, "lambda_init": 1.0}
    assert (masked["optimizer"], masked["lr"], masked["momentum"]) == ("sgd", 0.1, 0.9)
    assert masked["loss"] == "ce" and masked["loss_kwargs"] == {"label_smoothing": 0.1}
    klif = _config(tmp_path / "a" / "klif-seed3")
    # (a value TOML cannot write, None, is stored as JSON text)
    assert klif["neuron_kwargs"] == '{"v_reset": null, "detach_reset": false}'


def test_rejects_an_order_longer_than_the_columns(capsys):
    module = load_example("psn_family_digits")
    with pytest.raises(SystemExit):
        module.main(["--k", "9"])
    assert "--k must be in 1..8" in capsys.readouterr().err
