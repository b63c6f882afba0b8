"""The model zoo: the architectures of the field, built from spikeflow's neurons.

Every model takes time-major input ``[T, B, C, H, W]`` (or ``[T, B, C, L]`` for 1-d
models) and returns ``[T, B, num_classes]``; :func:`create_model` builds one by name,
:func:`list_models` lists the names and :func:`model_arguments` a model's arguments.
See ``docs/models.md``.

* :mod:`~spikeflow.models.resnet`: Spiking ResNet 18/34/50/101/152, ResNeXt and wide ResNets.
* :mod:`~spikeflow.models.sew_resnet`: SEW ResNet 18/34/50/101/152, ResNeXt, wide (ADD, AND, IAND).
* :mod:`~spikeflow.models.ms_resnet`: MS-ResNet 18/34/104.
* :mod:`~spikeflow.models.vgg`: Spiking VGG 11/13/16/19, with and without BN.
* :mod:`~spikeflow.models.plif_nets`: the PLIF paper's networks.
* :mod:`~spikeflow.models.sew_dvs`: the SEW networks for DVS128 Gesture and CIFAR10-DVS.
* :mod:`~spikeflow.models.digits`: the small PLIF net ``spikeflow train`` trains on 8x8 digits.
* :mod:`~spikeflow.models.stbp`: STBP's MLP and CNN (with NeuNorm and tdBN as options).
* :mod:`~spikeflow.models.event_driven`: the event-driven backpropagation paper's networks.
* :mod:`~spikeflow.models.psn_seqcifar`: the PSN paper's sequential-CIFAR Conv1d net.
* :mod:`~spikeflow.models.spiking_ssm`: spiking S4D sequence classifier, recurrent-LIF baseline.
* :mod:`~spikeflow.models.spike_gpt`: SpikeGPT, a spiking RWKV language model (and sampling).
* :mod:`~spikeflow.models.spikformer`: Spikformer, a spiking vision transformer.
* :mod:`~spikeflow.models.spike_driven`: the Spike-driven Transformer.
* :mod:`~spikeflow.models.qkformer`: QKFormer, a hierarchical spiking transformer (Q-K attention).
* :mod:`~spikeflow.models.maxformer`: Max-Former (max-pooling embeddings, depth-wise convolutions).
* :mod:`~spikeflow.models.masnn`: MA-SNN, multi-dimensional attention (DVS128 Gesture).
* :mod:`~spikeflow.models.delays`: the learnable-delay SNN (Hammouamri et al., SHD).
* :mod:`~spikeflow.models.rsnn`: the recurrent adaptive-LIF network (Bittar & Garner, SHD).
* :mod:`~spikeflow.models.eprop_rsnn`: Bellec et al.'s LIF/ALIF network (BPTT or e-prop).
* :mod:`~spikeflow.models.ottt_vgg`: OTTT's spiking VGG (weight standardisation, online training).
* :mod:`~spikeflow.models.snasnet`: SNASNet, the searched cells of spiking architecture search.
* :mod:`~spikeflow.models.spike_dhs`: SpikeDHS, searched cells with a surrogate gradient search.
* :mod:`~spikeflow.models.mobilenet`: spiking MobileNetV2 (inverted residuals, depthwise convs).
* :mod:`~spikeflow.models.efficientnet`: EfficientNet B0-B7, float and sigma-delta (Lava-DL's).
* :mod:`~spikeflow.models.max_resnet`: Max-ResNet (membrane shortcuts, max-pool downsampling).
* :mod:`~spikeflow.models.decolle_net`: the DECOLLE network (``spikeflow train --decolle``).
* :mod:`~spikeflow.models.eventprop_snn`: current-based LIF layers for EventProp (``--eventprop``).
* :mod:`~spikeflow.models.pilotnet`: Lava-DL's PilotNet SDNN and LIF steering regressors.
* :mod:`~spikeflow.models.tiny_yolov3`: the spiking (LIF or sigma-delta) tiny YOLOv3
  detector, Lava-DL's; a detector, not a classifier, so not in :func:`create_model`'s
  registry (``spikeflow train --dataset nmnist_detection --model tiny_yolov3``).
* :mod:`~spikeflow.models.common`: neuron selection by name (:data:`NEURONS`).
* :mod:`~spikeflow.models.torchvision_weights`: torchvision's ImageNet ANN weights into the
  spiking/SEW ResNets and VGGs (:func:`load_torchvision_weights`).
"""

from spikeflow.models import (
    decolle_net,
    delays,
    digits,
    efficientnet,
    eprop_rsnn,
    event_driven,
    eventprop_snn,
    masnn,
    max_resnet,
    maxformer,
    mobilenet,
    ms_resnet,
    ottt_vgg,
    pilotnet,
    plif_nets,
    psn_seqcifar,
    qkformer,
    resnet,
    rsnn,
    sew_dvs,
    sew_resnet,
    snasnet,
    spike_dhs,
    spike_driven,
    spike_gpt,
    spikformer,
    spiking_ssm,
    stbp,
    torchvision_weights,
    vgg,
)
from spikeflow.models.common import (
    NEURONS,
    NOT_IN_ZOO,
    NeuronFactory,
    list_neurons,
    resolve_neuron,
)
from spikeflow.models.registry import create_model, list_models, model_arguments, register_model
from spikeflow.models.torchvision_weights import (
    TorchvisionWeightsReport,
    load_torchvision_weights,
)

__all__ = [
    "NEURONS",
    "NOT_IN_ZOO",
    "NeuronFactory",
    "TorchvisionWeightsReport",
    "create_model",
    "decolle_net",
    "delays",
    "digits",
    "efficientnet",
    "eprop_rsnn",
    "event_driven",
    "eventprop_snn",
    "list_models",
    "list_neurons",
    "load_torchvision_weights",
    "masnn",
    "max_resnet",
    "maxformer",
    "mobilenet",
    "model_arguments",
    "ms_resnet",
    "ottt_vgg",
    "pilotnet",
    "plif_nets",
    "psn_seqcifar",
    "qkformer",
    "register_model",
    "resnet",
    "resolve_neuron",
    "rsnn",
    "sew_dvs",
    "sew_resnet",
    "snasnet",
    "spike_dhs",
    "spike_driven",
    "spike_gpt",
    "spikformer",
    "spiking_ssm",
    "stbp",
    "torchvision_weights",
    "vgg",
]
