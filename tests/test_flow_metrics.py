"""spikeflow.flow metrics (AEE, outliers, FWL, RSAT) against hand-worked values and
direct numpy references, and the DSEC 16-bit PNG flow format (decoder checked against
Pillow on the PNGs Pillow can write, every PNG filter, hand-made DSEC values, and the
errors on broken files)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import torch

from spikeflow.data.events import make_events
from spikeflow.data.io.png import decode_png, encode_png
from spikeflow.errors import ConfigurationError, DataFormatError, ShapeError
from spikeflow.flow import (
    decode_dsec_flow,
    encode_dsec_flow,
    endpoint_errors,
    flow_warp_loss,
    read_dsec_flow,
    rsat,
    windows_from_events,
    write_dsec_flow,
)


def test_endpoint_errors_by_hand() -> None:
    gt = torch.zeros(1, 2, 1, 5)
    gt[0, 0, 0] = torch.tensor([10.0, 1.0, 100.0, 76.0, 0.0])
    flow = gt.clone()
    flow[0, 0, 0, 0] = 14.0  # error 4 > 3 and > 0.5: outlier
    flow[0, 1, 0, 1] = 3.5  # error 3.5 > 3 and > 0.05: outlier
    flow[0, 0, 0, 2] = 104.0  # error 4 > 3 but < 5 % of 100: not an outlier
    flow[0, 0, 0, 3] = 79.9  # error 3.9 > 5 % of the truth 76 (not of the estimate 79.9)
    flow[0, 0, 0, 4] = 50.0  # ground truth invalid here
    valid = torch.tensor([[[True, True, True, True, False]]])
    out = endpoint_errors(flow, gt, valid)
    assert torch.allclose(out.aee, torch.tensor([(4 + 3.5 + 4 + 3.9) / 4]))
    assert torch.allclose(out.outliers, torch.tensor([75.0]))
    assert out.pixels.tolist() == [4]
    events = torch.tensor([[[[0, 1, 1, 0, 1]]]])
    masked = endpoint_errors(flow, gt, valid, event_mask=events)
    assert torch.allclose(masked.aee, torch.tensor([3.75])) and torch.allclose(
        masked.outliers, torch.tensor([50.0])
    )
    with pytest.raises(ShapeError, match="valid must be"):
        endpoint_errors(flow, gt, valid[:, :, :2])
    with pytest.raises(ShapeError, match=r"\[B, 2, H, W\]"):
        endpoint_errors(flow, gt[:, :1])


def moving_edge(T: int = 4, speed: float = 2.0):
    rows = []
    for k in range(T):
        for j in range(16):
            t = (j + 0.5) / 16
            for y in range(2, 14):
                rows.append((int((k + t) * 1000), round(2 + speed * (k + t)) % 16, y, j % 2))
    arr = np.array(rows)
    events = make_events(arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3])
    return windows_from_events(events, (16, 16), duration=1000)


def test_flow_warp_loss_and_rsat() -> None:
    w = moving_edge()
    zero = torch.zeros(4, 1, 2, 16, 16)
    right = zero.clone()
    right[:, :, 0] = 2.0
    assert torch.allclose(flow_warp_loss(zero, w), torch.ones(1)) and torch.allclose(
        rsat(zero, w), torch.ones(1)
    )
    assert float(flow_warp_loss(right, w)) > 2.0 and float(rsat(right, w)) < 0.9
    # FWL against numpy: events moved to t = T, rounded, counted, variance ratio
    tau = (w.t + torch.arange(4).view(4, 1, 1)).numpy()[w.valid.numpy()]
    x = w.x.numpy()[w.valid.numpy()] + (4 - tau) * 2.0
    y = w.y.numpy()[w.valid.numpy()]
    xr = np.round(x).astype(int)
    keep = (xr >= 0) & (xr < 16)
    iwe = np.zeros((16, 16))
    np.add.at(iwe, (y[keep], xr[keep]), 1.0)
    plain = np.zeros((16, 16))
    np.add.at(plain, (y, w.x.numpy()[w.valid.numpy()]), 1.0)
    assert np.isclose(
        float(flow_warp_loss(right, w)), iwe.var(ddof=1) / plain.var(ddof=1), rtol=1e-6
    )
    empty = type(w)(w.x, w.y, w.t, w.p, torch.zeros_like(w.valid), height=16, width=16)
    with pytest.raises(ConfigurationError, match="sample 0 has no events"):
        flow_warp_loss(zero, empty)


def test_png_decoder_matches_pillow() -> None:
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:40, 0:50]
    rgb = (
        (xx * 3 + yy * 2)[..., None] + np.array([0, 60, 120]) + rng.integers(0, 5, (40, 50, 3))
    ).astype(np.uint8)
    gray16 = (xx * 900 + yy * 400 + rng.integers(0, 60, (40, 50))).astype(np.uint16)
    for array in (rgb, gray16):
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG")  # Pillow picks Sub, Up and Paeth rows
        decoded = decode_png(buffer.getvalue())
        assert np.array_equal(decoded.reshape(array.shape), array)


@pytest.mark.parametrize("filter_type", range(5))
def test_png_every_filter_round_trips_16_bit_rgb(filter_type: int) -> None:
    image = np.random.default_rng(filter_type).integers(0, 65536, (7, 9, 3)).astype(np.uint16)
    assert np.array_equal(decode_png(encode_png(image, filter_type)), image)


def test_dsec_values_by_hand(tmp_path) -> None:
    image = np.zeros((2, 3, 3), np.uint16)
    image[..., :2] = 2**15
    image[0, 0] = (2**15 + 192, 2**15 - 64, 1)  # (1.5, -0.5) px, valid
    image[1, 2] = (2**15 + 128, 2**15 + 256, 0)  # invalid: flow reads as 0
    image[1, 0] = (2**15 - 1, 2**15 + 1, 7)  # any non-zero blue marks a valid pixel
    flow, valid = decode_dsec_flow(encode_png(image))
    assert flow.shape == (2, 2, 3) and flow.dtype == np.float32
    assert flow[:, 0, 0].tolist() == [1.5, -0.5] and flow[:, 1, 0].tolist() == [-1 / 128, 1 / 128]
    assert valid.tolist() == [[True, False, False], [True, False, False]]
    assert flow[:, 1, 2].tolist() == [0.0, 0.0]
    truth = np.random.default_rng(1).uniform(-100, 100, (2, 4, 5))
    mask = np.random.default_rng(2).random((4, 5)) < 0.7
    write_dsec_flow(tmp_path / "000000.png", truth, mask)
    back, back_valid = read_dsec_flow(tmp_path / "000000.png")
    assert (
        np.array_equal(back_valid, mask)
        and np.abs(back - np.where(mask, truth, 0)).max() <= 1 / 256 + 1e-6
    )


def test_broken_files_name_the_problem() -> None:
    good = encode_png(np.zeros((2, 2, 3), np.uint16))
    with pytest.raises(DataFormatError, match="not a PNG file"):
        decode_png(b"GIF89a" + good[6:])
    corrupt = bytearray(good)
    corrupt[40] ^= 0xFF
    with pytest.raises(DataFormatError, match=r"at byte offset .* CRC"):
        decode_png(bytes(corrupt))
    with pytest.raises(DataFormatError, match=r"truncated|past the end"):
        decode_png(good[:-20])
    with pytest.raises(DataFormatError, match="16-bit RGB"):
        decode_dsec_flow(encode_png(np.zeros((2, 2, 3), np.uint8)), "flow.png")
    header = struct.pack(">IIBBBBB", 2, 2, 16, 2, 0, 0, 1)
    chunk = (
        struct.pack(">I", 13) + b"IHDR" + header + struct.pack(">I", zlib.crc32(b"IHDR" + header))
    )
    with pytest.raises(DataFormatError, match="interlaced"):
        decode_png(good[:8] + chunk + good[33:])
    with pytest.raises(ConfigurationError, match="does not fit the 16-bit"):
        encode_dsec_flow(np.full((2, 1, 1), 300.0))


def test_rsat_of_events_all_at_time_zero_is_an_error() -> None:
    events = make_events([5], [3], [4], [1])  # one window of one event: tau = 0
    w = windows_from_events(events, (16, 16), num_events=1)
    with pytest.raises(ConfigurationError, match=r"rsat: sample 0 .* 0/0"):
        rsat(torch.zeros(1, 1, 2, 16, 16), w)
