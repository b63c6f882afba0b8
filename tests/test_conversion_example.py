"""examples/convert_digits.py converts real trained networks (short runs)."""

from __future__ import annotations

import pytest
import torch

from conftest import load_example, require_shared_data


def _run_example(argv: list[str]):
    module = load_example("convert_digits")
    threads = torch.get_num_threads()
    try:
        return module.main(argv)
    finally:
        torch.set_num_threads(threads)


def test_convert_digits_example_short_run(capsys):
    pytest.importorskip("sklearn", reason="scikit-learn (the 'examples' extra) is needed")
    # 20 epochs as the documented run (after 5, λ is still near its initial 8 and the QCFS
    # gap at T = L is -14 points), but only T = 1, 8, 16.
    result = _run_example(["--epochs", "20", "--steps", "1,8,16"])
    rows, at = result.rows, {t: i for i, t in enumerate(result.steps)}
    assert result.steps == (1, 8, 16)
    max_ann, max_snn = rows["ReLU, max-norm"]
    assert max_ann > 0.9
    # Rate coding converges with T (seed 0: -0.56 points at T = 16 on an AMD EPYC, -1.6 on
    # an Intel Xeon; the float rounding of training moves it between CPUs).
    assert max_snn[at[16]] >= max_ann - 0.05
    robust = rows["ReLU, robust 99.9%"][1]
    assert robust[at[8]] >= max_snn[at[8]]  # the robust norm fires more at small T
    qcfs_ann, qcfs_snn = rows[result.qcfs_row]
    assert qcfs_ann > 0.95
    # QCFS at T = L = 8. The first neuron layer gets a constant current and is exactly the
    # ANN's QCFS; what is left is unevenness in the deeper layers (tested to be the whole
    # gap in test_conversion_convert.py::test_deep_qcfs_gap_at_t_equal_l_is_unevenness_only),
    # which here leaves about 4-13 % of their neurons one spike off. Measured gaps at 20
    # epochs for seeds 0, 1, 2 (3): -1.39, +0.56, 0.00 points on an AMD EPYC and -1.67,
    # +0.28, -0.28 (0.00) on an Intel Xeon, so the margin is 3 points (11 of the 360 test
    # images): CI's CPU is not known in advance.
    assert abs(qcfs_snn[at[8]] - qcfs_ann) <= 0.03, (qcfs_ann, qcfs_snn)
    shares = list(result.unevenness.values())
    assert shares[0] == 0.0 and len(shares) == 4
    assert 0.0 < max(shares) < 0.2
    assert qcfs_snn[at[16]] >= qcfs_ann - 0.02
    group = rows["QCFS L=8, group neurons m=4"][1]
    assert group[at[1]] > 0.8 and group[at[1]] > qcfs_snn[at[1]] + 0.3  # m levels per step
    # multi-threshold neurons resolve 2^8 levels in one step (measured 99.44% at T = 1)
    multi = rows["ReLU, max-norm, 8 thresholds"][1]
    assert multi[at[1]] >= max_ann - 0.02 and multi[at[1]] > max_snn[at[1]] + 0.5
    # the Gaussian θ for 8 levels (with V0 = θ/2) at T = 8: measured 99.72%
    gaussian = rows["ReLU, Gaussian θ for 8 levels, V0=θ/2"][1]
    assert gaussian[at[8]] >= max_ann - 0.03
    # differential coding: 98.89% at T = 8 with one threshold, 99.44% at T = 1 with 8
    assert rows["ReLU, max-norm, differential"][1][at[8]] >= max_ann - 0.03
    assert rows["ReLU, max-norm, 8 thresholds, differential"][1][at[1]] >= max_ann - 0.02
    out = capsys.readouterr().out
    assert "T=16" in out and "QCFS at T = L = 8: SNN - ANN =" in out


def test_convert_nmnist_example_on_a_slice(capsys):
    """The N-MNIST report path of the example on 200 train / 100 test recordings."""
    root = require_shared_data("nmnist-small")
    result = _run_example(
        [
            "--dataset",
            "nmnist",
            "--nmnist-root",
            str(root),
            "--train-samples",
            "200",
            "--test-samples",
            "100",
            "--epochs",
            "8",
            "--batch-size",
            "16",
            "--steps",
            "1,8",
        ]
    )
    rows, at = result.rows, {t: i for i, t in enumerate(result.steps)}
    out = capsys.readouterr().out
    assert "N-MNIST subset as event-count images: 200 train / 100 test" in out
    assert "QCFS at T = L = 8" in out
    assert len(rows) == 13
    relu_ann, _ = rows["ReLU, max-norm"]
    qcfs_ann, qcfs_snn = rows[result.qcfs_row]
    assert relu_ann > 0.6 and qcfs_ann > 0.6  # chance is 0.1 (measured 0.83 and 0.76)
    per_channel = rows["ReLU, 99.9% per channel, V0=θ/2"][1]
    assert per_channel[at[8]] >= relu_ann - 0.1  # measured: 0.82
    # On 200 recordings and 8 epochs the QCFS gap at T = L is not stable: -0.09, +0.02,
    # -0.41, 0.00, 0.00, -0.14 for seeds 0-5 on one machine (its cause, unevenness in the
    # deeper layers, is pinned in test_conversion_convert.py), and it moves with the
    # CPU's float rounding. This path is checked for a working SNN, not for the gap.
    assert qcfs_snn[at[8]] > 0.3  # chance is 0.1
    group = rows["QCFS L=8, group neurons m=4"][1]
    assert group[at[1]] > qcfs_snn[at[1]] + 0.3  # measured 0.71 vs 0.02
    assert result.unevenness and next(iter(result.unevenness.values())) == 0.0
    multi = rows["ReLU, Gaussian θ (4·2^8 levels), 8 thresholds"][1]
    assert multi[at[1]] >= relu_ann - 0.15  # measured 0.76 (ANN 0.83)
