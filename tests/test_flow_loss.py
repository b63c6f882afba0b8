"""spikeflow.flow windows, warping and the contrast-maximisation loss: against a direct
per-event loop in float64 (the paper's formula written out event by event), float64
gradcheck, hand-worked cases, real events, and the errors on bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import require_shared_data
from spikeflow.data.events import make_events
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.flow import (
    EventWindows,
    average_timestamp_loss,
    charbonnier_smoothness,
    contrast_maximization_loss,
    image_of_warped_events,
    stack_recordings,
    windows_from_events,
)


def random_windows(T: int, B: int, N: int, H: int, W: int, seed: int = 0) -> EventWindows:
    g = torch.Generator().manual_seed(seed)
    valid = torch.rand(T, B, N, generator=g) < 0.8
    valid[:, :, 0] = True
    return EventWindows(
        torch.randint(0, W, (T, B, N), generator=g),
        torch.randint(0, H, (T, B, N), generator=g),
        torch.rand(T, B, N, generator=g, dtype=torch.float64),
        torch.rand(T, B, N, generator=g) < 0.5,
        valid, height=H, width=W,
    )  # fmt: skip


def reference_timestamp_loss(flow: torch.Tensor, w: EventWindows, t_ref: float) -> list[float]:
    """The per-sample loss event by event: warp, splat to the 4 neighbours, average
    timestamps per pixel and polarity, sum of squares over the pixels hit."""
    T, B, N = w.x.shape
    out = []
    for b in range(B):
        count: dict[tuple[int, int, int], float] = {}
        stamp: dict[tuple[int, int, int], float] = {}
        for k in range(T):
            for n in range(N):
                if not w.valid[k, b, n]:
                    continue
                x, y = int(w.x[k, b, n]), int(w.y[k, b, n])
                tau = k + float(w.t[k, b, n])
                u, v = float(flow[k, b, 0, y, x]), float(flow[k, b, 1, y, x])
                xw, yw = x + (t_ref - tau) * u, y + (t_ref - tau) * v
                pol = 0 if w.p[k, b, n] else 1
                for i in (math.floor(xw), math.floor(xw) + 1):
                    for j in (math.floor(yw), math.floor(yw) + 1):
                        weight = max(0.0, 1 - abs(xw - i)) * max(0.0, 1 - abs(yw - j))
                        if 0 <= i < w.width and 0 <= j < w.height and weight > 0:
                            key = (pol, j, i)
                            count[key] = count.get(key, 0.0) + weight
                            stamp[key] = stamp.get(key, 0.0) + weight * (T - abs(t_ref - tau))
        total = sum((stamp[k] / (count[k] + 1e-9) / T) ** 2 for k in count)
        hit = {(j, i) for (_, j, i), c in count.items() if c > 0}
        out.append(total / len(hit))
    return out


@pytest.mark.parametrize("t_ref", [0.0, 1.3, 3.0])
def test_timestamp_loss_equals_per_event_loop(t_ref: float) -> None:
    w = random_windows(3, 2, 25, 7, 9)
    flow = (
        torch.randn(3, 2, 2, 7, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        * 2
    )
    got = average_timestamp_loss(flow, w, t_ref)
    assert torch.allclose(
        got, torch.tensor(reference_timestamp_loss(flow, w, t_ref), dtype=torch.float64), rtol=1e-12
    )


def test_loss_is_forward_plus_backward_plus_smoothness() -> None:
    w = random_windows(2, 2, 20, 6, 8, seed=3)
    flow = torch.randn(2, 2, 2, 6, 8, dtype=torch.float64)
    fw = torch.tensor(reference_timestamp_loss(flow, w, 2.0))
    bw = torch.tensor(reference_timestamp_loss(flow, w, 0.0))
    smooth = charbonnier_smoothness(flow)
    got = contrast_maximization_loss(flow, w, 0.25)
    assert torch.allclose(got, (fw + bw).mean().double() + 0.25 * smooth, rtol=1e-12)


def test_a_list_of_flows_averages_their_losses() -> None:
    w = random_windows(2, 1, 15, 6, 8, seed=4)
    flows = [torch.randn(2, 1, 2, 6, 8, dtype=torch.float64) for _ in range(3)]
    mask = w.mask(torch.float64)
    each = [contrast_maximization_loss(f, w, 0.2, mask=mask) for f in flows]
    assert torch.allclose(
        contrast_maximization_loss(flows, w, 0.2, mask=mask), sum(each) / 3, rtol=1e-12
    )
    with pytest.raises(ConfigurationError, match="empty list"):
        contrast_maximization_loss([], w)


def test_charbonnier_smoothness_by_hand() -> None:
    # A 2x2 image, three windows, one flow jump of 3 px in window 0: per kind, the mean
    # over the pairs of rho(du) + rho(dv).
    flow = torch.zeros(3, 1, 2, 2, 2, dtype=torch.float64)
    flow[0, 0, 0, 0, 1] = 3.0  # u at (y=0, x=1), window 0
    eps = 1e-3

    def rho(d: float) -> float:
        return math.sqrt(d * d + eps * eps)

    horizontal = (rho(3) + rho(0) * 11) / 6  # 6 pairs (2 rows x 3 windows)
    vertical = (rho(3) + rho(0) * 11) / 6
    diag_down = rho(0) * 6 / 3  # (0,0)-(1,1): no jump involved
    diag_up = (rho(3) + rho(0) * 5) / 3  # (1,0)-(0,1) in window 0 touches it
    temporal = (rho(3) + rho(0) * 15) / 8  # 4 pixels x 2 window pairs
    expected = (horizontal + vertical + diag_down + diag_up + temporal) / 5
    assert math.isclose(float(charbonnier_smoothness(flow, eps=eps)), expected, rel_tol=1e-12)
    mask = torch.ones(3, 1, 1, 2, 2, dtype=torch.float64)
    mask[:, :, :, 0, 1] = 0.0  # the pixel with the jump is masked out of every pair
    assert math.isclose(float(charbonnier_smoothness(flow, mask, eps=eps)), 2 * eps, rel_tol=1e-9)


def test_gradcheck_float64() -> None:
    w = random_windows(2, 2, 12, 5, 6, seed=5)
    flow = (
        torch.randn(2, 2, 2, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
        * 1.3
    ).requires_grad_()
    mask = w.mask(torch.float64)
    assert torch.autograd.gradcheck(
        lambda f: contrast_maximization_loss(f, w, 0.3, mask=mask), (flow,)
    )
    assert torch.autograd.gradcheck(lambda f: image_of_warped_events(f, w, 1.0), (flow,))


def test_correct_flow_beats_zero_and_wrong_flow() -> None:
    # A vertical edge moving right by 2 px per window: events at x = 2k + 2t.
    rows, T = [], 4
    for k in range(T):
        for j in range(20):
            t = (j + 0.5) / 20
            for y in range(3, 13):
                rows.append((int((k + t) * 1000), int(2 + 2 * (k + t)), y, 1))
    arr = np.array(rows)
    events = make_events(arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3])
    w = windows_from_events(events, (16, 16), duration=1000)
    assert w.num_windows == T

    def loss_for(u: float) -> float:
        flow = torch.zeros(T, 1, 2, 16, 16, dtype=torch.float64)
        flow[:, :, 0] = u
        return float(contrast_maximization_loss(flow, w, 0.0))

    assert (
        loss_for(2.0) < loss_for(0.0)
        and loss_for(2.0) < loss_for(4.0)
        and loss_for(2.0) < loss_for(-2.0)
    )


def test_windows_counts_mask_and_normalised_times() -> None:
    t = np.array([0, 10, 20, 30, 40, 50, 60])
    events = make_events(
        t,
        np.array([0, 1, 1, 2, 0, 0, 3]),
        np.array([0, 0, 0, 1, 2, 2, 2]),
        np.array([1, 0, 0, 1, 1, 1, 0]),
    )
    w = windows_from_events(events, (4, 3, 2), num_events=3)
    assert w.num_windows == 2  # the seventh event is a tail shorter than a window
    assert torch.allclose(w.t[0, 0], torch.tensor([0.0, 0.5, 1.0]))
    counts = w.counts()
    assert counts.shape == (2, 1, 2, 3, 4)
    assert counts[0, 0, 0, 0, 0] == 1 and counts[0, 0, 1, 0, 1] == 2 and counts.sum() == 6
    assert counts[1, 0, 0, 2, 0] == 2 and counts[1, 0, 0, 1, 2] == 1
    assert w.mask().sum() == 4
    by_time = windows_from_events(events, (4, 3), duration=25)
    assert by_time.valid.sum(-1).flatten().tolist() == [3, 2, 2]
    assert torch.allclose(by_time.t[1, 0, :2], torch.tensor([0.2, 0.6]))
    both = stack_recordings([w, windows_from_events(events[:6], (4, 3), num_events=3)])
    assert both.x.shape == (2, 2, 3) and bool(both.valid.all())
    padded = stack_recordings([w, windows_from_events(events[:4], (4, 3), duration=20)])
    assert padded.valid[:, 1].tolist() == [[True, True, False], [True, True, False]]
    assert torch.equal(padded.counts()[:, 1].sum((1, 2, 3)), torch.tensor([2.0, 2.0]))


def test_real_events_loss_and_iwe() -> None:
    from spikeflow.data.io import read_events

    rec = read_events(require_shared_data("event-files", "aedat2", "IMU_translBoxes.aedat"))
    w = windows_from_events(rec.events[:3000], rec.sensor_size, num_events=1000)
    assert (w.height, w.width) == (180, 240)
    zero = torch.zeros(3, 1, 2, 180, 240, dtype=torch.float64)
    assert torch.equal(
        image_of_warped_events(zero, w).sum(1)[0], w.counts(torch.float64).sum(0)[0].sum(0)
    )
    sub = EventWindows(
        *(getattr(w, n)[:, :, ::25] for n in ("x", "y", "t", "p", "valid")), height=180, width=240
    )
    flow = torch.randn(
        3, 1, 2, 180, 240, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    ref = reference_timestamp_loss(flow, sub, 3.0)
    assert math.isclose(float(average_timestamp_loss(flow, sub, 3.0)), ref[0], rel_tol=1e-12)


def test_errors() -> None:
    w = random_windows(2, 1, 5, 4, 4)
    with pytest.raises(ShapeError, match=r"\[T, B, 2, H, W\]"):
        contrast_maximization_loss(torch.zeros(2, 1, 2, 4, 5), w)
    with pytest.raises(DTypeError, match="floating-point"):
        contrast_maximization_loss(torch.zeros(2, 1, 2, 4, 4, dtype=torch.long), w)
    with pytest.raises(ConfigurationError, match="t_ref"):
        average_timestamp_loss(torch.zeros(2, 1, 2, 4, 4), w, 2.5)
    empty = EventWindows(w.x, w.y, w.t, w.p, torch.zeros_like(w.valid), height=4, width=4)
    with pytest.raises(ConfigurationError, match=r"sample 0 .* no events"):
        contrast_maximization_loss(torch.zeros(2, 1, 2, 4, 4), empty)
    with pytest.raises(ConfigurationError, match=r"sample 0 has x = \d+, outside the sensor"):
        EventWindows(w.x + 4, w.y, w.t, w.p, w.valid, height=4, width=4)
    with pytest.raises(ConfigurationError, match=r"t = .*\[0, 1\]"):
        EventWindows(w.x, w.y, w.t + 2, w.p, w.valid, height=4, width=4)
    with pytest.raises(ShapeError, match=r"EventWindows\.y has shape"):
        EventWindows(w.x, w.y[:, :, :2], w.t, w.p, w.valid, height=4, width=4)
    events = make_events(np.array([0, 5]), np.array([0, 9]), np.array([0, 0]), np.array([1, 1]))
    with pytest.raises(ConfigurationError, match="event 1 has x = 9, outside the sensor"):
        windows_from_events(events, (4, 4), num_events=1)
    with pytest.raises(ConfigurationError, match="fewer than one window"):
        windows_from_events(events, (10, 4), num_events=3)
    with pytest.raises(ConfigurationError, match="exactly one"):
        windows_from_events(events, (10, 4))
    backwards = make_events(np.array([5, 0]), np.array([0, 1]), np.array([0, 0]), np.array([1, 1]))
    with pytest.raises(ConfigurationError, match="event 1 has time 0 before"):
        windows_from_events(backwards, (4, 4), num_events=1)


def test_padding_never_reaches_the_loss_or_its_gradient() -> None:
    """A batch of recordings with different event counts: each sample's loss equals the
    loss of that recording alone, and the flow at pixel (0, 0), where only the padding
    events point, gets no gradient and changes nothing."""
    g = np.random.default_rng(3)

    def recording(n: int) -> np.ndarray:
        t, x, y = np.sort(g.integers(0, 10_000, n)), g.integers(1, 12, n), g.integers(1, 9, n)
        return make_events(t, x, y, g.integers(0, 2, n))

    one = windows_from_events(recording(60), (12, 9), num_events=20, dtype=torch.float64)
    two = windows_from_events(recording(90), (12, 9), num_events=30, dtype=torch.float64)
    both = stack_recordings([one, two])
    assert int((~both.valid).sum()) == 30  # sample 0 is padded by 10 per window
    flow = (torch.randn(3, 2, 2, 9, 12, dtype=torch.float64) * 2).requires_grad_()
    alone = [average_timestamp_loss(flow[:, b : b + 1], w, 3.0) for b, w in enumerate((one, two))]
    assert torch.allclose(average_timestamp_loss(flow, both, 3.0), torch.cat(alone), rtol=1e-13)
    contrast_maximization_loss(flow, both, mask=both.mask(torch.float64)).backward()
    assert float(flow.grad[..., 0, 0].abs().max()) == 0.0
    moved = flow.detach().clone()
    moved[..., 0, 0] = 1e6
    for t_ref in (0.0, 3.0):
        assert torch.equal(
            average_timestamp_loss(moved, both, t_ref),
            average_timestamp_loss(flow.detach(), both, t_ref),
        )


def test_border_events_lose_the_weight_that_leaves_the_sensor() -> None:
    events = make_events([0, 10], [11, 0], [8, 0], [1, 0])  # corners of a 12x9 sensor
    w = windows_from_events(events, (12, 9), num_events=2)
    flow = torch.zeros(1, 1, 2, 9, 12)
    assert float(image_of_warped_events(flow, w).sum()) == 2.0
    flow[0, 0, 0] = 0.5  # half a pixel to the right per window
    forward = image_of_warped_events(flow, w)  # the event at x = 11, tau = 0 moves to 11.5
    assert float(forward[0, 0, 8, 11]) == 0.5 and float(forward.sum()) == 1.5
    backward = image_of_warped_events(flow, w, 0.0)  # the event at x = 0, tau = 1 to -0.5
    assert float(backward[0, 1, 0, 0]) == 0.5 and float(backward.sum()) == 1.5


def test_float32_agrees_with_float64() -> None:
    w = random_windows(3, 2, 40, 11, 13, seed=4)
    flow = torch.randn(
        3, 2, 2, 11, 13, dtype=torch.float64, generator=torch.Generator().manual_seed(5)
    )
    w32 = EventWindows(w.x, w.y, w.t.float(), w.p, w.valid, height=11, width=13)
    for t_ref in (0.0, 3.0):
        high = average_timestamp_loss(flow, w, t_ref)
        low = average_timestamp_loss(flow.float(), w32, t_ref)
        assert low.dtype == torch.float32 and torch.allclose(low.double(), high, rtol=1e-5)
