"""examples/delayed_xor_dh_lif.py: the delayed spiking XOR's data as the authors' script
defines it (noise, the two windows' rates, the XOR label), and the 'lif' baseline being
the DH-LIF soma on the undelayed input."""

from __future__ import annotations

import torch

from conftest import load_example

xor = load_example("delayed_xor_dh_lif")


def test_batch_follows_the_task_definition():
    x, label = xor.batch(4000, 60, torch.Generator().manual_seed(0))
    assert x.shape == (60, 4000, 20) and set(x.unique().tolist()) == {0.0, 1.0}
    noise = x[10:50].mean().item()
    assert abs(noise - 0.01) < 0.002
    # each window's per-sample rate is 0.2 or 0.6 (plus noise): split at 0.4
    high = [x[window].mean((0, 2)) > 0.4 for window in (slice(0, 10), slice(50, 60))]
    for h, window in zip(high, (slice(0, 10), slice(50, 60)), strict=True):
        rate = x[window].mean((0, 2))
        assert abs(rate[h].mean().item() - (0.6 + 0.4 * 0.01)) < 0.01
        assert abs(rate[~h].mean().item() - (0.2 + 0.8 * 0.01)) < 0.01
        assert 0.45 < h.float().mean().item() < 0.55
    assert torch.equal(label, (high[0] != high[1]).long())


def test_lif_baseline_is_the_soma_on_the_input():
    torch.manual_seed(0)
    net = xor.Net("lif")
    x = torch.rand(12, 3, 20)
    current = net.dense(x)
    assert not net.node.dendrites.tau_n.requires_grad
    d = net.node.dendrites(current)
    torch.testing.assert_close(d, current.sum(-1), rtol=1e-12, atol=1e-12)
    out = net(x)
    assert out.shape == (12, 3, 2)
    loss, acc = xor.window_loss(out, torch.tensor([0, 1, 1]))
    assert loss.item() > 0 and 0 <= acc.item() <= 1
