"""examples/noisysan_pendulum.py's ILC-SAN actor (``--actor ilcsan``): its output
population is an ``ILCCubaLIFNode`` whose intra-layer connections get gradients from
the actor's loss, its actions are bounded torques, and a short TD3 run trains it."""

from __future__ import annotations

import pytest
import torch

from conftest import load_example

pendulum = load_example("noisysan_pendulum")


def test_ilc_actor_spikes_and_trains_its_intra_layer_connections():
    torch.manual_seed(0)
    actor = pendulum.ILCActor(T=5, hidden=32, dec_pop=10)
    obs = torch.rand(64, 3) * 2 - 1
    seen = []
    actor.out_pop.register_forward_hook(lambda m, i, o: seen.append(o))
    u = actor(obs)
    assert u.shape == (64, 1) and u.abs().max() <= pendulum.MAX_TORQUE
    assert seen[0].shape == (5, 64, 10) and 0 < seen[0].mean() < 1  # the population fires
    u.sum().backward()
    assert actor.out_pop.conn.weight.grad.abs().sum() > 0
    assert actor.encoder.mean.grad.abs().sum() > 0  # through every layer


def test_short_td3_run_and_the_exploration_check(capsys):
    torch.manual_seed(0)
    returns = pendulum.main(["--actor", "ilcsan", "--exploration", "gaussian", "--steps", "1020",
                             "--eval-every", "1020", "--hidden", "16"])  # fmt: skip
    assert len(returns) == 1 and -2000 < returns[0] < 0
    assert "ilcsan actor, gaussian seed 0 step 1020: eval return" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        pendulum.main(["--actor", "ilcsan", "--exploration", "noisysan"])
    assert "no neuron noise" in capsys.readouterr().err
