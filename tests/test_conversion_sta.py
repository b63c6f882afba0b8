"""STA conversion of float Transformers (``convert_transformer(encoders="sta")``):
against SpikingJelly 2.0's ``STATransformerRecipe``, the threshold rule by hand, the
accumulate-difference baseline against the float model, nn.TransformerEncoder traced."""

import pytest
import torch
from torch import nn

from spikeflow.conversion import convert_transformer, impulse_input
from spikeflow.conversion.report import ConversionError
from spikeflow.conversion.sta import STAEncoder, sta_threshold, traceable_encoders
from spikeflow.errors import ConfigurationError
from spikeflow.functional import streaming

torch.set_num_threads(1)


class _Block(nn.Module):
    def __init__(self, d: int = 16, heads: int = 2) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.fc1, self.act, self.fc2 = nn.Linear(d, 32), nn.GELU(), nn.Linear(32, d)

    def forward(self, x):
        y = self.ln1(x)
        a, _w = self.attn(y, y, y, need_weights=False)
        x = x + a
        return x + self.fc2(self.act(self.fc1(self.ln2(x))))


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb, self.block, self.head = nn.Linear(8, 16), _Block(), nn.Linear(16, 3)

    def forward(self, x):
        return self.head(self.block(self.emb(x)).mean(1))


def _net_and_batches():
    torch.manual_seed(0)
    net = _Net().double().eval()
    batches = [torch.randn(4, 5, 8, dtype=torch.float64) for _ in range(3)]
    return net, batches


@pytest.mark.parametrize("mode", ["mse", "max"])
def test_sta_equals_spikingjelly_recipe(mode):
    sj_conv = pytest.importorskip("spikingjelly.activation_based.ann2snn.converter")
    from spikingjelly.activation_based import functional as sjf
    from spikingjelly.activation_based.ann2snn.recipes.sta_transformer import (
        STATransformerRecipe,
    )

    net, batches = _net_and_batches()
    steps = 8
    recipe = STATransformerRecipe(
        batches, time_steps=steps, mode="spiking_encoder", threshold_mode=mode,
        threshold_scale=1.5,
    )  # fmt: skip
    sj = sj_conv.FXConverter(recipe).convert(net)
    sjf.set_step_mode(sj, "m")
    snn, report = convert_transformer(
        net, encoders="sta", calibration=batches, steps=steps, threshold=mode,
        threshold_scale=1.5,
    )  # fmt: skip
    ours = {n: m.threshold for n, m in snn.body.named_modules() if isinstance(m, STAEncoder)}
    theirs = {n: m.v_threshold for n, m in sj.named_modules() if hasattr(m, "v_threshold")}
    assert len(ours) == len(theirs) == 4 == len(report.converted)
    pairs = {"b_ln1": "block.ln1", "b_attn": "getitem", "b_ln2": "block.ln2", "b_act": "block.act"}
    for ours_name, sj_name in pairs.items():
        (a,) = [t for n, t in ours.items() if n.startswith(ours_name.replace("b_", "block_"))]
        torch.testing.assert_close(a, theirs[f"{sj_name}_sta_encoder"], rtol=0, atol=0)
    x = torch.randn(6, 5, 8, dtype=torch.float64)
    seq = impulse_input(x, steps)
    with torch.no_grad():
        torch.testing.assert_close(snn(seq), sj(seq), rtol=0, atol=1e-12)
    sjf.reset_net(sj)


def test_threshold_rule_by_hand():
    torch.manual_seed(1)
    a = torch.randn(7, 3, dtype=torch.float64) * torch.tensor([1.0, 3.0, 0.1], dtype=torch.float64)
    steps = 4
    got_max = sta_threshold(a, steps, "max")
    got = sta_threshold(a, steps, "mse")
    for c in range(3):
        values = a[:, c]
        peak = values.abs().max().item()
        assert got_max[c].item() == pytest.approx(peak / steps, rel=1e-15)
        best, best_err = None, float("inf")
        for i in range(31):
            theta = peak * (0.125 + i * 1.875 / 30) / steps
            q = torch.trunc(values / theta) * theta
            err = (values - q).square().mean().item()
            if err < best_err - 1e-15:
                best, best_err = theta, err
        assert got[c].item() == pytest.approx(best, rel=1e-12)


def test_encoder_rule_and_streaming():
    torch.manual_seed(2)
    theta = torch.tensor([0.3, 0.05], dtype=torch.float64)
    x = torch.randn(9, 4, 2, dtype=torch.float64)
    enc = STAEncoder(theta)
    out = enc(x)
    v = torch.zeros(4, 2, dtype=torch.float64)
    for t in range(9):
        v = v + x[t]
        s = torch.trunc(v / theta) * theta
        v = v - s
        torch.testing.assert_close(out[t], s, rtol=0, atol=1e-15)
    enc2 = STAEncoder(theta)
    with streaming(enc2):
        chunks = torch.cat([enc2(c) for c in x.split(4)])
    torch.testing.assert_close(chunks, out, rtol=0, atol=0)


def test_equivalent_mode_is_the_float_model_at_every_step():
    net, batches = _net_and_batches()
    snn, report = convert_transformer(net, encoders="none")
    assert not report.converted
    x = batches[0]
    sums = snn.accumulate(x, 5)
    for t in range(5):
        torch.testing.assert_close(sums[t], net(x), rtol=0, atol=1e-12)


def _encoder(norm_first: bool, activation) -> nn.Module:
    torch.manual_seed(3)
    layer = nn.TransformerEncoderLayer(
        16, 2, 32, dropout=0.1, activation=activation, batch_first=True, norm_first=norm_first
    )
    return (
        nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(16), enable_nested_tensor=False)
        .double()
        .eval()
    )


@pytest.mark.parametrize(("norm_first", "activation"), [(False, "gelu"), (True, nn.GELU())])
def test_transformer_encoder_traced_and_converted(norm_first, activation):
    import copy

    model = _encoder(norm_first, activation)
    x = torch.randn(3, 6, 16, dtype=torch.float64)
    traced = traceable_encoders(copy.deepcopy(model)).eval()
    torch.testing.assert_close(traced(x), model(x), rtol=0, atol=1e-12)
    snn, _ = convert_transformer(model, encoders="none")
    torch.testing.assert_close(snn.accumulate(x, 3)[-1], model(x), rtol=0, atol=1e-12)
    batches = [torch.randn(8, 6, 16, dtype=torch.float64) for _ in range(2)]
    errors = []
    for steps in (4, 64):
        snn, report = convert_transformer(model, encoders="sta", calibration=batches, steps=steps)
        # per layer: 2 LayerNorms, the attention output and the GELU; then the final norm
        assert len(report.converted) == 9
        errors.append((snn.accumulate(x, steps)[-1] - model(x)).abs().mean().item())
    assert errors[1] < errors[0] / 4


def test_bad_options_are_named():
    net, batches = _net_and_batches()
    with pytest.raises(ConfigurationError, match="encoders"):
        convert_transformer(net, encoders="spiking")
    with pytest.raises(ConfigurationError, match="calibration"):
        convert_transformer(net, encoders="sta", steps=4)
    with pytest.raises(ConfigurationError, match="steps"):
        convert_transformer(net, encoders="sta", calibration=batches, steps=0)
    with pytest.raises(ConfigurationError, match="threshold"):
        convert_transformer(net, encoders="sta", calibration=batches, steps=4, threshold="p99")
    with pytest.raises(ConfigurationError, match="calibration batch 0"):
        convert_transformer(net, encoders="sta", calibration=[[None]], steps=4)
    with pytest.raises(ConfigurationError, match="threshold"):
        STAEncoder(torch.tensor([0.1, 0.0]))
    with pytest.raises(ConfigurationError, match=r"iterable of batches.*\(4, 5, 8\)"):
        convert_transformer(net, encoders="sta", calibration=batches[0], steps=4)
    for bad in (0, -1, 1.5):
        with pytest.raises(ConfigurationError, match="calibration_batches"):
            convert_transformer(
                net, encoders="sta", calibration=batches, steps=4, calibration_batches=bad
            )
    with pytest.raises(ConfigurationError, match=r"batch 0 \(shape \(4, 5, 8\), torch.float32"):
        convert_transformer(net, encoders="sta", calibration=[batches[0].float()], steps=4)


def test_mse_ties_take_the_smallest_factor():
    # a constant channel: c = 1/8, 1/4, 1/2 and 1 all truncate it exactly; the first wins
    a = torch.ones(5, 1, dtype=torch.float64)
    assert sta_threshold(a, 1, "mse").item() == 0.125


def test_digits_example_runs_and_prints_its_table(capsys, monkeypatch):
    pytest.importorskip("sklearn")
    import sys
    from pathlib import Path

    examples = Path(__file__).resolve().parents[1] / "examples"
    monkeypatch.syspath_prepend(str(examples))
    import convert_float_transformer_digits as example

    monkeypatch.setattr(sys, "argv", ["x", "--epochs", "3", "--steps", "4", "16"])
    example.main()
    out = capsys.readouterr().out
    ann = float(out.split("float model: ")[1].split(" %")[0])
    assert ann > 50  # 3 epochs learn the digits well above chance (10 %)
    rows = [line for line in out.splitlines() if line.startswith("| threshold=")]
    assert len(rows) == 2
    mse_t16 = float(rows[0].split("|")[-2])
    assert abs(mse_t16 - ann) < 10  # the MSE rule at T=16 keeps the float accuracy


def _layer(batch_first: bool = True) -> nn.TransformerEncoderLayer:
    torch.manual_seed(4)
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=batch_first)
    return layer.double().eval()


class _RawSequenceFirst(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(16, 2)  # batch_first=False: dim 0 the tokens

    def forward(self, x):
        return self.attn(x, x, x, need_weights=False)[0]


@pytest.mark.parametrize("encoders", ["none", "sta"])
def test_sequence_first_attention_is_refused(encoders):
    # time is folded into dim 0: a batch_first=False attention reads it as the tokens, its
    # steps attending to each other (the running sums were silently wrong, 0.9 off)
    x = torch.randn(3, 5, 16, dtype=torch.float64)
    options = {"encoders": encoders}
    if encoders == "sta":
        options |= {"calibration": [x], "steps": 4}
    for model in (_layer(batch_first=False), _RawSequenceFirst().double()):
        with pytest.raises(ConversionError, match="batch_first=False"):
            convert_transformer(model, **options)


class _Masked(nn.Module):
    def __init__(self, how: str) -> None:
        super().__init__()
        self.enc = nn.TransformerEncoder(_layer(), 1, enable_nested_tensor=False)
        self.how = how

    def forward(self, x):
        if self.how == "padding":
            return self.enc(x, src_key_padding_mask=x[..., 0] > 2)
        if self.how == "causal":
            return self.enc.layers[0](x, None, None, True)
        return self.enc(x, mask=None, src_key_padding_mask=None)


def test_masks_are_refused_by_name():
    x = torch.randn(3, 5, 16, dtype=torch.float64)
    with pytest.raises(ConversionError, match="src_key_padding_mask"):
        convert_transformer(_Masked("padding"), encoders="none")
    with pytest.raises(ConversionError, match="is_causal"):
        convert_transformer(_Masked("causal"), encoders="none")
    with pytest.raises(ConversionError, match="src_key_padding_mask"):  # while calibrating
        convert_transformer(_Masked("padding"), encoders="sta", calibration=[x], steps=4)
    model = _Masked("none").double().eval()  # masks given as None: the unmasked model
    snn, _ = convert_transformer(model, encoders="none")
    torch.testing.assert_close(snn.accumulate(x, 2)[-1], model(x), rtol=0, atol=1e-12)


class _Unused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ln, self.spare, self.fc = nn.LayerNorm(16), nn.LayerNorm(16), nn.Linear(16, 4)

    def forward(self, x):
        return self.fc(self.ln(x))


def test_a_norm_the_forward_never_calls_gets_no_encoder():
    x = torch.randn(4, 5, 16)
    _snn, report = convert_transformer(_Unused(), encoders="sta", calibration=[x], steps=8)
    assert [e.detail for e in report.converted] == ["STA encoder on ln, θ per channel"]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_zero_channel_is_finite_and_as_spikingjelly(dtype):
    # a channel of zeros gets θ = 1e-6/T, 0 in fp16: v/θ was 0/0 = nan
    enc = STAEncoder(torch.tensor([1e-6 / 64, 0.05, 0.3]))
    x = torch.randn(6, 4, 3).to(dtype)
    x[..., 0] = 0
    out = enc(x)
    assert torch.isfinite(out).all()
    sj = pytest.importorskip("spikingjelly.activation_based.ann2snn.recipes.sta_transformer")
    ref = sj._STASpikeEncoder(enc.threshold.to(dtype))
    (mem,) = ref.materialize_states((x[0],), (None,), "s")
    for t in range(6):
        (s,), (mem,) = ref.single_step_functional_forward((x[t],), (mem,))
        torch.testing.assert_close(out[t], s, rtol=0, atol=0)


class _ViT(nn.Module):
    """Tokens embedded, a class token and position embedding (parameters), dropout."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Linear(8, 16)
        self.cls = nn.Parameter(torch.randn(1, 1, 16))
        self.pos = nn.Parameter(torch.randn(1, 6, 16))
        layer = nn.TransformerEncoderLayer(16, 2, 32, 0.5, "gelu", batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        h = self.emb(x)
        h = torch.cat([self.cls.expand(h.shape[0], -1, -1), h], 1) + self.pos
        return self.head(self.enc(h)[:, 0])


def test_vit_like_model_in_train_mode_with_labelled_batches():
    import copy

    torch.manual_seed(5)
    model = _ViT().double().train()  # dropout on: calibration must run in eval mode
    batches = [(torch.randn(8, 5, 8, dtype=torch.float64), torch.zeros(8)) for _ in range(2)]
    x, other = torch.randn(3, 5, 8, dtype=torch.float64), torch.randn(3, 5, 8).double()
    options = {"encoders": "sta", "calibration": batches, "steps": 64}
    snn, report = convert_transformer(model, **options)
    assert model.training and len(report.converted) == 8
    calibrated = {n: m.threshold for n, m in snn.named_modules() if isinstance(m, STAEncoder)}
    in_eval, _ = convert_transformer(copy.deepcopy(model).eval(), **options)
    for name, module in in_eval.named_modules():  # dropout off while calibrating
        if isinstance(module, STAEncoder):
            torch.testing.assert_close(calibrated[name], module.threshold, rtol=0, atol=0)
    reference = model.eval()(x)
    with torch.no_grad():
        first = snn.accumulate(x, 64)[-1]
        snn.accumulate(other, 64)  # no state kept from one call to the next
        again = snn.accumulate(x, 64)[-1]
    torch.testing.assert_close(again, first, rtol=0, atol=0)
    assert (first - reference).abs().max() < 0.05 * reference.abs().max()
    snn, _ = convert_transformer(model, encoders="none")
    torch.testing.assert_close(snn.accumulate(x, 3)[-1], reference, rtol=0, atol=1e-12)
