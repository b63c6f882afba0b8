"""NIR export of the residual zoo beyond the plain sums: MS-ResNet (neuron before the
convolution, real values on the shortcut), SEW ResNet with AND / IAND (a NIR
``Threshold`` of a sum of spikes), ResNeXt's grouped convolutions, and the attention
nets' refusal. Each on real N-MNIST frames: prepared = the model (spikes identical),
exported and imported = the prepared network (float64, 1e-12), and a peer's NIR import
where it reads the graph (SpikingJelly 2.0 for MS-ResNet; no peer reads grouped
convolutions or Threshold / Scale nodes)."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from conftest import require_shared_data
from spikeflow.errors import ConfigurationError
from spikeflow.interop import export_to_nir, import_from_nir, prepare_for_export
from spikeflow.interop.prepare import ResidualBlockForExport
from spikeflow.models import create_model
from test_export_prepare import _exercise, _spikes

pytest.importorskip("nirtorch")


@pytest.fixture(scope="module")
def frames() -> torch.Tensor:
    """Three real N-MNIST test digits as 4 binary frames each: [4, 3, 2, 34, 34]."""
    from spikeflow.data import NMNIST

    ds = NMNIST(require_shared_data("nmnist-small"), train=False, data_type="frame",
                frames_number=4, split_by="number")  # fmt: skip
    return (torch.stack([ds[i][0] for i in (0, 37, 71)]) > 0).transpose(0, 1).double()


def _model(name: str, **kwargs: object) -> nn.Module:
    model = create_model(name, stem="cifar", num_classes=10, in_channels=2, **kwargs)
    return _exercise(model.double(), offset=0.0).eval()


def _check_round_trip(model: nn.Module, x: torch.Tensor) -> tuple[nn.Module, object]:
    """Prepared = model spike for spike; the NIR graph read back = prepared (1e-12)."""
    prepared = prepare_for_export(model, x)
    original, rewritten = _spikes(model, x), _spikes(prepared, x)
    assert len(original) == len(rewritten)
    for a, b in zip(original[:-1], rewritten[:-1], strict=True):
        assert 0 < a.mean() < 1 and torch.equal(a, b)
    torch.testing.assert_close(rewritten[-1], original[-1], rtol=0, atol=1e-12)
    graph = export_to_nir(prepared, x)
    with torch.no_grad():
        got = import_from_nir(graph, dtype=torch.float64)(x)
    torch.testing.assert_close(got, rewritten[-1], rtol=0, atol=1e-12)
    return prepared, graph


def test_ms_resnet_exports_its_membrane_shortcuts_and_spikingjelly_runs_it(frames):
    """Each block is shortcut(x) + BN0(conv(SN(BN(conv(SN(x)))))): the sums of real
    values are edges into the next neurons and the downsample convolutions."""
    model = _model("ms_resnet18", base_width=4, zero_init_residual=False)
    prepared, graph = _check_round_trip(model, frames)
    blocks = [m for m in prepared if isinstance(m, ResidualBlockForExport)]
    assert len(blocks) == 8 and all(b.neuron is None and b.connect == "ADD" for b in blocks)
    assert sum(type(n).__name__ == "LIF" for n in graph.nodes.values()) == 17
    # the second block's first neurons sum the stem and the first block's branch
    neuron = next(n for n, node in graph.nodes.items() if n.startswith("layer1_1") and
                  type(node).__name__ == "LIF")  # fmt: skip
    assert len([e for e in graph.edges if e[1] == neuron]) == 2
    pytest.importorskip("spikingjelly", reason="SpikingJelly (test-only peer) is not installed")
    from spikingjelly.activation_based.nir_exchange.from_nir import import_from_nir as sj_import

    from test_nir_peers import _quiet

    with _quiet(), torch.no_grad():
        peer = sj_import(export_to_nir(prepared, frames, dt=1e-4), dt=1e-4, dtype=torch.float64,
                         step_mode="m")  # fmt: skip
        got = peer(frames)
    got = got[0] if isinstance(got, tuple) else got
    expected = _spikes(prepared, frames)[-1]
    torch.testing.assert_close(got.reshape(expected.shape), expected, rtol=0, atol=1e-12)


def test_ms_resnet104_pools_its_shortcut_without_ceil_where_no_window_is_partial(frames):
    """MS-ResNet-104's shortcut is avgpool2(ceil_mode=True)-conv1x1-tdBN: on 32x32 (the
    digits cropped) every pooled side is even, and the pool is the same with
    ceil_mode=False, which NIR has; on the full 34x34 a 17x17 side is refused."""
    model = _model("ms_resnet104", base_width=4, zero_init_residual=False)
    with pytest.raises(ConfigurationError) as error:
        prepare_for_export(model, frames)
    message = str(error.value)
    assert "'layer3.0.downsample.0' (AvgPool2d): ceil_mode=True on a 17x17 input" in message
    assert "partial last window" in message and "'layer2.0.downsample.0'" not in message
    prepared, graph = _check_round_trip(model, frames[..., 1:33, 1:33])
    pools = [m for m in prepared.modules() if isinstance(m, nn.AvgPool2d)]
    assert len(pools) == 4 and not any(p.ceil_mode for p in pools)  # 3 shortcuts, the head
    assert sum(type(n).__name__ == "LIF" for n in graph.nodes.values()) == 103


@pytest.mark.parametrize("cnf", ["AND", "IAND"])
def test_sew_and_iand_export_as_a_threshold_of_a_sum_of_spikes(frames, cnf):
    """A·S = Θ(A + S − 1.5) and S·(1 − A) = Θ(S − A − 0.5) on 0/1 spikes: one NIR
    Threshold per block; the original model computes the products."""
    model = _model("sew_resnet18", base_width=4, cnf=cnf)
    prepared, graph = _check_round_trip(model, frames)
    blocks = [m for m in prepared if isinstance(m, ResidualBlockForExport)]
    assert len(blocks) == 8 and {b.connect for b in blocks} == {cnf}
    thresholds = [n for n in graph.nodes.values() if type(n).__name__ == "Threshold"]
    assert len(thresholds) == 8
    assert {float(t.threshold.reshape(-1)[0]) for t in thresholds} == {1.5 if cnf == "AND" else 0.5}
    outputs = []
    hooks = [b.register_forward_hook(lambda _m, _a, out: outputs.append(out)) for b in blocks]
    _spikes(prepared, frames)
    for hook in hooks:
        hook.remove()
    for out in outputs:  # every block passes spikes on, some and not all
        assert set(out.unique().tolist()) == {0.0, 1.0}


def test_sew_and_on_values_that_are_not_spikes_is_refused_by_name(frames):
    model = _model("sew_resnet18", base_width=4, cnf="AND")
    model.stem[-1] = nn.Identity()  # the first block gets the stem's batch norm values
    with pytest.raises(ConfigurationError) as error:
        prepare_for_export(model, frames)
    message = str(error.value)
    assert "'layer1.0' (SEWBasicBlock): the SEW connect function cnf='AND'" in message
    assert "only on 0/1 spikes; its input comes from Conv2d, not a spiking neuron" in message
    assert "'layer1.1'" not in message  # its input is the AND block's spikes


def test_resnext_grouped_convolutions_export(frames):
    """ResNeXt-50 32x4d (SEW, ADD): 3x3 convolutions in 32 groups, typed with their full
    input channels. No peer reads them: SpikingJelly 2.0's NIR import refuses grouped
    convolutions, and snnTorch 1.0's and Norse 1.1's build torch's Conv2d with
    ``in_channels = weight.shape[1]`` (the channels per group), which torch refuses."""
    model = _model("sew_resnext50_32x4d", base_width=16)
    _, graph = _check_round_trip(model, frames)
    grouped = [n for n in graph.nodes.values() if type(n).__name__ == "Conv2d" and n.groups > 1]
    assert len(grouped) == 16 and {n.groups for n in grouped} == {32}
    for node in grouped:
        assert node.input_type["input"][0] == node.weight.shape[1] * 32


@pytest.mark.parametrize(
    ("name", "attention", "why"),
    [
        ("spikformer", "SpikingSelfAttention", "Q·(Kᵀ·V): products of spike matrices"),
        ("spike_driven_transformer", "SpikeDrivenSelfAttention", "element-wise products"),
    ],
)
def test_attention_is_refused_naming_the_layer_and_the_product(name, attention, why):
    model = create_model(name, input_size=16, embed_dim=32, num_heads=2, depth=1, num_classes=4)
    with pytest.raises(ConfigurationError) as error:
        export_to_nir(model, torch.rand(2, 1, 3, 16, 16))
    message = str(error.value)
    assert f"'blocks.0.attention' ({attention}) computes" in message and why in message
    assert "which no NIR node computes" in message


def test_prepare_names_attention_with_the_max_pooling_it_refuses():
    """Spikformer has max pooling in its patch splitting and attention in each block:
    prepare_for_export (the first step of 'spikeflow export') names both, so that a run
    retrained with average pooling is not refused for its attention afterwards."""
    model = create_model("spikformer", input_size=16, embed_dim=32, num_heads=2, depth=2,
                         num_classes=4)  # fmt: skip
    with pytest.raises(ConfigurationError) as error:
        prepare_for_export(model, torch.rand(2, 1, 3, 16, 16))
    message = str(error.value)
    assert "(MaxPool2d): NIR has no max pooling" in message
    for block in (0, 1):
        assert (
            f"'blocks.{block}.attention' (SpikingSelfAttention) computes Q·(Kᵀ·V): products "
            "of spike matrices, which no NIR node (nor netx) computes"
        ) in message


def test_one_attention_layer_among_exportable_ones_writes_no_file(tmp_path):
    """Linear-LIF layers with one QK attention between them: refused by prepare and by
    export (naming it and its product), and no file (nor a temporary one) is left."""
    from spikeflow import layers, neurons
    from spikeflow.interop import write_nir

    model = nn.Sequential(
        layers.Linear(8, 16), neurons.LIFNode(),
        layers.QKAttention(16, 2), layers.Linear(16, 4), neurons.LIFNode(),
    )  # fmt: skip
    x = torch.rand(3, 2, 5, 8)
    why = re.escape("'2' (QKAttention) computes mask ⊙ K: a product of spikes")
    with pytest.raises(ConfigurationError, match=why):
        prepare_for_export(model, x)
    with pytest.raises(ConfigurationError, match=why):
        write_nir(export_to_nir(model, x), tmp_path / "net.nir")
    assert list(tmp_path.iterdir()) == []


def test_attention_built_for_a_fixed_t_is_named_not_the_probe_s_shape_error():
    """MA-SNN's attention takes exactly its T steps; NIR export's shape probe runs 2, and
    its ShapeError came out instead of the refusal naming the attention."""
    sizes = {"channels": (8, 8, 8), "fc_hidden": 16, "reduction_t": 4, "reduction_c": 4}
    model = create_model("masnn_dvs128_gesture", num_classes=4, T=8, input_size=16, **sizes)
    with pytest.raises(ConfigurationError) as error:
        export_to_nir(model.eval(), torch.rand(8, 1, 2, 16, 16))
    message = str(error.value)
    assert "'conv_blocks.0.attn' (MultiDimensionalAttention) computes x ⊙ scores(x)" in message
    assert "'fc_blocks.1.attn' (TemporalWiseAttention) computes" in message
    assert "the shape probe on [2, 3, ...] zeros failed too (ShapeError: MASNN was" in message


def test_spike_gpt_s_rwkv_time_mixing_is_named_as_attention():
    model = create_model("spike_gpt", vocab_size=16, d_model=16, n_layers=2)
    with pytest.raises(ConfigurationError) as error:
        prepare_for_export(model, torch.randint(0, 16, (4, 2)))
    for block in (0, 1):
        assert f"'blocks.{block}.att' (RWKVTimeMix) computes sigmoid(r) ⊙ wkv(k, v)" in str(
            error.value
        )


def test_a_sew_and_block_after_an_add_block_is_refused_naming_the_sum(frames):
    """SEW blocks of mixed connect functions: AND / IAND blocks pass spikes on, so any
    block may follow them (the first four here); an AND or IAND block after an ADD block
    gets its sums and is refused, naming them (it was named as 'ResidualBlockForExport')."""
    model = _model("sew_resnet18", base_width=4, cnf="ADD")
    for (stage, index), cnf in zip(((1, 0), (1, 1), (2, 0), (3, 1)), ("AND", "IAND", "AND", "IAND"),
                                   strict=True):  # fmt: skip
        getattr(model, f"layer{stage}")[index].cnf = cnf
    with pytest.raises(ConfigurationError) as error:
        prepare_for_export(model, frames)
    message = str(error.value)
    assert "'layer3.1' (SEWBasicBlock): the SEW connect function cnf='IAND'" in message
    assert "its input comes from a residual block adding its paths (values 0, 1, 2" in message
    assert "'layer2.0'" not in message  # fed by the IAND block's spikes
    model.layer3[1].cnf = "ADD"
    prepared, _ = _check_round_trip(model, frames)
    blocks = [m for m in prepared if isinstance(m, ResidualBlockForExport)]
    assert [b.connect for b in blocks] == ["AND", "IAND", "AND"] + ["ADD"] * 5
