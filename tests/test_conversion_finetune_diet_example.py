"""examples/convert_finetune_digits_diet.py: the leak / STDB comparison, a short run."""

from __future__ import annotations

import pytest
import torch

from conftest import load_example


def test_diet_example_short_run(capsys):
    pytest.importorskip("sklearn", reason="scikit-learn (the 'examples' extra) is needed")
    module = load_example("convert_finetune_digits_diet")
    threads = torch.get_num_threads()
    try:
        result = module.main(
            ["--seeds", "0", "--steps", "4", "--epochs", "10", "--finetune-epochs", "2",
             "--variants", "triangle,stdb + leak"]
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert set(result.tuned) == {"triangle", "stdb + leak"} and result.ann[0] > 0.9
    # max-norm is at chance at T = 4; the triangle surrogate lifts it in two epochs
    assert result.converted[4][0] < 0.2 and result.tuned["triangle"][4][0] > 0.8, result
    assert len(result.leaks["stdb + leak"][4][0]) == 4  # one λ per neuron layer, as run
    assert all(lk == 1.0 for lk in result.leaks["triangle"][4][0])
    assert "stdb + leak" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        module.main(["--variants", "leaky"])


def _trained(fine_tunable, snn, x, y, steps, scale, **options):
    """fine_tune's recipe written out: Adam, cosine schedule, cross-entropy on the
    output over the steps times ``scale`` (1: the mean, ``steps``: the sum)."""
    tuned = fine_tunable(snn, **options)
    opt = torch.optim.Adam(tuned.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=2)
    for _ in range(2):
        order = torch.randperm(len(x))
        for i in range(0, len(x), 8):
            idx = order[i : i + 8]
            out = tuned.rate(x[idx], steps) * scale
            loss = torch.nn.functional.cross_entropy(out, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    return tuned


def test_fine_tune_readout_sum_puts_the_loss_on_the_summed_output():
    from spikeflow.conversion import convert, fine_tunable

    module = load_example("convert_finetune_digits")
    torch.manual_seed(0)
    ann = torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.ReLU(), torch.nn.Linear(12, 3))
    x, y = torch.rand(24, 6), torch.randint(0, 3, (24,))
    snn, _ = convert(ann.eval(), x, fraction=0.5)
    runs = {}
    for readout, scale in (("sum", 5), ("mean", 1)):
        torch.manual_seed(1)
        got = module.fine_tune(snn, x, y, 5, 2, 1e-2, 8, readout=readout, surrogate_function="stdb")
        torch.manual_seed(1)
        want = _trained(fine_tunable, snn, x, y, 5, scale, surrogate_function="stdb")
        for g, w in zip(got.parameters(), want.parameters()):
            torch.testing.assert_close(g, w, rtol=0, atol=0)
        runs[readout] = torch.cat([p.detach().flatten() for p in got.parameters()])
    assert not torch.equal(runs["sum"], runs["mean"])  # the readout changes the training
    with pytest.raises(ValueError, match="readout must be 'mean' or 'sum', got 'last'"):
        module.fine_tune(snn, x, y, 5, 1, 1e-2, 8, readout="last")
