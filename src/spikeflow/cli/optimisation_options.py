"""The ``spikeflow train`` options of the "optimisation" group: the loss, optimizer and
schedule, and the training methods (online, TBPTT/FPTT, e-prop, DECOLLE, EventProp,
distillation, quantization, pruning, ...)."""

from __future__ import annotations

import argparse
from typing import Any

from spikeflow.training.config import READOUT_MODES

__all__ = ["add_optimisation_options"]


def add_optimisation_options(o: Any, s: Any) -> None:
    """Add the optimisation options to the argument group ``o`` (``s``: the default that
    keeps an option not given out of the namespace, ``argparse.SUPPRESS``)."""
    o.add_argument(
        "--loss",
        default=s,
        help="mse (rate vs one-hot), ce, tet, tcl, stcl (tcl over two augmented views), "
        "count; time-based (event-driven nets): "
        "count+, sum0, ce+, ttfs, timing, kernel (target spike trains); snnTorch's: "
        "mse_membrane, ce_max_membrane, ce_count, mse_count, mse_temporal, ce_temporal; "
        "Lava-DL's: spike_rate (needs --loss-kwargs true_rate=R false_rate=R), spike_max, "
        "spike_moid. "
        "Default: the dataset's recipe with its default model (ce for rsnn on the audio "
        "datasets), else mse",
    )
    o.add_argument(
        "--loss-kwargs",
        nargs="+",
        default=s,
        metavar="KEY=VALUE",
        help="loss arguments, e.g. lamb=0.05 for tet",
    )
    o.add_argument(
        "--spike-reg",
        default=s,
        choices=["none", "l1_rate_sparsity", "l2_spike_population", "im_loss", "event_rate"],
        help="add a spike regulariser on the spiking layers' outputs of the same forward "
        "to the loss (event_rate: also sigma-delta events, Lava-DL's PilotNet SDNN "
        "budget; default none; docs/training_tricks.md)",
    )
    o.add_argument(
        "--spike-reg-kwargs",
        nargs="+",
        default=s,
        metavar="KEY=VALUE",
        help="its arguments, e.g. strength=1e-4 reduction=mean, target_rate=0.1 for "
        "im_loss, max_rate=0.01 for event_rate, layers='[\"features.5\"]' for some layers only",
    )
    o.add_argument(
        "--readout",
        default=s,
        choices=list(READOUT_MODES),
        help="how accuracy reads the predicted class: auto (default: the loss's), rate "
        "(time-mean), count (most spikes, ties to the earlier), first_spike, max (largest "
        "maximum over time, a membrane readout)",
    )
    o.add_argument(
        "--regression-readout",
        default=s,
        choices=["mean", "last", "per_step"],
        help="a regression run's (--dataset diabetes, pilotnet) decoding of the output: "
        "mean (default: over time, a rate or mean membrane), last (the last step's "
        "membrane), per_step (every step vs the target; pilotnet's)",
    )
    o.add_argument("--optimizer", default=s, choices=["sgd", "adam", "adamw", "rmsprop"],
                   help="default adam; rmsprop with --momentum and SpikingJelly's alpha 0.9, "
                   "eps 0.0316")  # fmt: skip
    o.add_argument("--nesterov", action="store_true", default=s,
                   help="Nesterov momentum for --optimizer sgd (SpikingJelly's --opt "
                   "sgd_nesterov)")  # fmt: skip
    o.add_argument(
        "--lr",
        type=float,
        default=s,
        help="learning rate (default: the dataset's recipe with its default model, 1e-2 "
        "for rsnn on the audio datasets; else 1e-3)",
    )
    o.add_argument("--weight-decay", type=float, default=s, help="default 0")
    o.add_argument(
        "--no-decay-norm-bias",
        action="store_true",
        default=s,
        help="no weight decay on the normalisation layers' parameters, the biases, the "
        "neurons' parameters (learnable time constants, thresholds) and the learned "
        "quantization steps (LSQ), in every parameter group, the model's own included "
        "(docs/training.md)",
    )
    o.add_argument("--momentum", type=float, default=s, help="for sgd (default 0.9)")
    o.add_argument(
        "--schedule",
        default=s,
        choices=["cosine", "step", "exponential", "none"],
        help="learning-rate schedule per epoch (default cosine over --epochs; exponential: "
        "the rate times --gamma every epoch)",
    )
    o.add_argument("--lr-min", type=float, default=s, metavar="LR",
                   help="the floor of the cosine schedule (default 0)")  # fmt: skip
    o.add_argument(
        "--step-size", type=int, default=s, help="epochs per step of 'step' (default 30)"
    )
    o.add_argument(
        "--gamma",
        type=float,
        default=s,
        help="factor of each 'step', or of every epoch of 'exponential' (default 0.1)",
    )
    o.add_argument("--epochs", type=int, default=s, help="default 40")
    o.add_argument(
        "--warmup-epochs",
        type=int,
        default=s,
        metavar="N",
        help="learning-rate warm-up over the first N epochs (shaped by --warmup-method; "
        "the default ramp: epoch k at lr (k+1)/(N+1)), then --schedule over the rest "
        "(default 0)",
    )
    o.add_argument("--warmup-method", default=s, choices=["ramp", "linear", "constant"],
                   help="ramp (default: epoch k at lr (k+1)/(N+1)); linear: from "
                   "--warmup-factor x lr up to lr over N epochs (torch's LinearLR); "
                   "constant: --warmup-factor x lr for N epochs (ConstantLR)")  # fmt: skip
    o.add_argument("--warmup-factor", type=float, default=s, metavar="F",
                   help="the linear/constant warm-up's factor of lr, in (0, 1] (default "
                   "0.01, SpikingJelly's --lr-warmup-decay)")  # fmt: skip
    o.add_argument(
        "--clip-grad-norm",
        type=float,
        default=s,
        metavar="MAX",
        help="clip the gradients' global L2 norm to MAX before each update",
    )
    o.add_argument(
        "--model-ema",
        action="store_true",
        default=s,
        help="keep an exponential moving average of the weights and buffers (torchvision's "
        "recipe), evaluated each epoch as test_acc_ema; spikeflow eval --ema reads it",
    )
    o.add_argument(
        "--model-ema-steps",
        type=int,
        default=s,
        metavar="N",
        help="update the average after every N-th batch of an epoch (default 32)",
    )
    o.add_argument(
        "--model-ema-decay",
        type=float,
        default=s,
        metavar="DECAY",
        help="the recipe's decay (default 0.99998), adjusted by batch_size * N / epochs "
        "(docs/training.md)",
    )
    o.add_argument(
        "--teacher",
        default=s,
        metavar="PATH",
        help="knowledge distillation from a trained teacher: a spikeflow train run folder "
        "(its best.pt) or checkpoint, a TorchScript file, or a module saved with "
        "torch.save(model) returning logits [B, K] (docs/training.md)",
    )
    o.add_argument(
        "--kd-alpha",
        type=float,
        default=s,
        metavar="A",
        help="with --teacher: weight of the soft-target term; 1 - A weighs --loss (default 0.5)",
    )
    o.add_argument(
        "--kd-temperature",
        type=float,
        default=s,
        metavar="TAU",
        help="with --teacher: the softmax temperature of teacher and student (default 4)",
    )
    o.add_argument(
        "--teacher-ema",
        action="store_true",
        default=s,
        help="with --teacher RUN: the teacher run's model EMA (--model-ema) instead of its "
        "trained weights",
    )
    o.add_argument(
        "--sync-bn",
        action="store_true",
        default=s,
        help="under torchrun: batch norms use the statistics of the global batch "
        "(every process's samples)",
    )
    o.add_argument(
        "--fsdp",
        action="store_true",
        default=s,
        help="under torchrun: shard weights, gradients and optimizer state over the "
        "processes (torch's FSDP2) instead of DDP's whole copies; checkpoints hold full "
        "weights",
    )
    o.add_argument(
        "--tensor-parallel",
        type=int,
        default=s,
        metavar="N",
        help="under torchrun: split the model's channels over groups of N consecutive "
        "processes (channel tensor parallelism), the groups data-parallel (the world size "
        "a multiple of N; default 1: no split); checkpoints hold full weights",
    )
    o.add_argument(
        "--ra-sampler",
        action="store_true",
        default=s,
        help="repeated augmentation (DeiT's RASampler): each sample --ra-reps times per "
        "epoch, the copies on different processes; an epoch of len // 256 * 256 draws",
    )
    o.add_argument(
        "--ra-reps",
        type=int,
        default=s,
        metavar="K",
        help="with --ra-sampler: the copies of each sample per epoch (default 3)",
    )
    o.add_argument(
        "--mixup",
        type=float,
        default=s,
        metavar="ALPHA",
        help="mixup of each training batch, λ ~ Beta(ALPHA, ALPHA) (default 0: off; e.g. "
        "0.2; a loss that takes class distributions: mse, ce, tet, mse_membrane, "
        "ce_max_membrane, ce_count, mse_count)",
    )
    o.add_argument(
        "--cutmix",
        type=float,
        default=s,
        metavar="ALPHA",
        help="CutMix of each training batch (default 0: off; e.g. 1.0); with --mixup, one of "
        "the two per batch",
    )
    o.add_argument(
        "--batch-size",
        type=int,
        default=s,
        help="global batch (split over the processes); default: the dataset's (32 digits, "
        "128 SHD/SSC/SpeechCommands, else 16)",
    )
    o.add_argument(
        "--amp",
        default=s,
        choices=["off", "bf16", "fp16"],
        help="autocast: off (default), bf16 (CPU or GPU) or fp16 (GPU, with gradient scaling)",
    )
    o.add_argument(
        "--mask-schedule",
        default=s,
        choices=["paper", "linear", "none"],
        help="masked PSN's progressive mask per epoch: paper (default; fully on after "
        "1/8 of the epochs), linear, none (keep lambda_init)",
    )
    o.add_argument(
        "--prune",
        default=s,
        choices=["none", "grad_r", "stds", "lats"],
        help="prune synapses while training (docs/pruning.md): grad_r (Gradient Rewiring, "
        "Adam), stds (soft threshold, sine/linear/slats schedule), lats (threshold grows "
        "with the learning rate); default none",
    )
    o.add_argument(
        "--prune-kwargs",
        nargs="+",
        default=s,
        metavar="KEY=VALUE",
        help="pruning arguments: grad_r alpha=1e-3 target_sparsity=0.95; stds "
        "final_threshold=D shape=sine start_epoch=0; lats l1=LAMBDA start_epoch=0; "
        'any of them exclude=["features.0"] (layers left dense)',
    )
    o.add_argument(
        "--weight-bits",
        type=int,
        default=s,
        help="train with linear and convolution weights quantized to this many bits "
        "(1-16, symmetric, per output channel; 1: binary, mean|w|·sign(w); "
        "docs/quantization.md)",
    )
    o.add_argument(
        "--weight-quant",
        default=s,
        choices=["fixed", "lsq"],
        help="with --weight-bits: fixed scales max|w|/q (default) or learned step sizes "
        "(LSQ, Esser et al. 2020; docs/quantization.md)",
    )
    o.add_argument(
        "--input-bits",
        type=int,
        default=s,
        help="quantize the real-valued input of the first layer to this many bits "
        "(2-16, unsigned, learned step: LSQ; docs/quantization.md)",
    )
    o.add_argument(
        "--membrane-bits",
        type=int,
        default=s,
        help="train with every neuron's membrane held in a signed fixed-point register of "
        "this many bits (2-24; docs/quantization.md)",
    )
    o.add_argument(
        "--membrane-fraction-bits",
        type=int,
        default=s,
        help="with --membrane-bits: the threshold is the register's level 2^F "
        "(default bits - 2: the register spans [-2 threshold, 2 threshold))",
    )
    o.add_argument(
        "--recompute",
        action="store_true",
        default=s,
        help="recompute the network's blocks in the backward pass instead of keeping their "
        "activations, spikes packed at one bit: less memory, one more forward pass, the "
        "same training (docs/memory.md)",
    )
    o.add_argument(
        "--online",
        action="store_true",
        default=s,
        help="online training (SLTT): one step at a time, a backward pass per step, no "
        "gradient through the neurons' carried state; memory independent of T (loss "
        "mse, ce, tet or mse_membrane, applied per step; docs/training_methods.md)",
    )
    o.add_argument(
        "--online-steps",
        type=int,
        default=s,
        metavar="K",
        help="with --online: backpropagate only K randomly drawn steps per batch (SLTT-K)",
    )
    o.add_argument(
        "--online-trace-decay",
        type=float,
        default=s,
        metavar="LAMBDA",
        help="with --online: OTTT, the linear and convolution weights learn from presynaptic "
        "traces decaying by LAMBDA per step (1 - 1/tau of the neurons, 0.5 for tau = 2)",
    )
    o.add_argument(
        "--tbptt",
        type=int,
        default=s,
        metavar="K",
        help="truncated BPTT: each batch runs in windows of K steps, the loss of each "
        "window backpropagated as it ends and the carried state detached between windows "
        "(memory of K steps, not T; the last window is shorter if K does not divide T; "
        "docs/training_methods.md)",
    )
    o.add_argument(
        "--tbptt-update",
        default=s,
        choices=["window", "batch"],
        help="with --tbptt: 'window' (default) updates the weights after every window "
        "(snnTorch's TBPTT); 'batch' accumulates the windows' gradients, one update per batch",
    )
    o.add_argument(
        "--fptt",
        type=float,
        default=s,
        metavar="ALPHA",
        help="with --tbptt K: forward propagation through time (Kag & Saligrama 2021; Yin "
        "et al. 2023), each window's loss plus a pull of strength ALPHA (e.g. 0.1) towards "
        "a running mean of the weights (docs/training_methods.md)",
    )
    o.add_argument(
        "--eprop",
        default=s,
        choices=["symmetric", "random", "adaptive"],
        metavar="FEEDBACK",
        help="train --model eprop_rsnn by e-prop (Bellec et al. 2020): gradients forward in "
        "time, memory independent of T, with symmetric, random or adaptive feedback "
        "(loss ce per step; docs/training_methods.md)",
    )
    o.add_argument(
        "--eprop-rate-target",
        type=float,
        default=s,
        metavar="RATE",
        help="with --eprop: the firing-rate regularisation's target in spikes per step "
        "(default 0.01)",
    )
    o.add_argument(
        "--eprop-rate-strength",
        type=float,
        default=s,
        metavar="C",
        help="with --eprop: the firing-rate regularisation's strength (default 0: off)",
    )
    o.add_argument(
        "--eprop-feedback-decay",
        type=float,
        default=s,
        metavar="DECAY",
        help="with --eprop adaptive: weight decay of W_out and B (default 0)",
    )
    o.add_argument(
        "--decolle",
        action="store_true",
        default=s,
        help="train --model decolle by DECOLLE (Kaiser et al. 2020): every layer learns from "
        "its own fixed random readout's loss at every step, no gradient across layers or "
        "steps (docs/training_methods.md)",
    )
    o.add_argument(
        "--decolle-loss",
        default=s,
        choices=["smooth_l1", "mse"],
        help="with --decolle: the layers' local loss (default smooth_l1, the paper's)",
    )
    o.add_argument(
        "--decolle-burnin",
        type=int,
        default=s,
        metavar="N",
        help="with --decolle: run the first N steps of a sample without learning or output "
        "(default 0)",
    )
    o.add_argument(
        "--decolle-update",
        default=s,
        choices=["step", "sequence"],
        help="with --decolle: 'step' (default) updates the weights after every time step, "
        "'sequence' once per batch",
    )
    o.add_argument(
        "--decolle-reg-u",
        type=_numbers,
        default=s,
        metavar="L[,L...]",
        help="with --decolle: the reference code's membrane regularisation, one strength "
        "for all layers or one per layer (default off)",
    )
    o.add_argument(
        "--decolle-layer-lr",
        type=_numbers,
        default=s,
        metavar="S[,S...]",
        help="with --decolle: each layer's learning rate as a multiple of --lr, one for all "
        "layers or one per layer (default 1)",
    )
    o.add_argument(
        "--eventprop",
        nargs="?",
        const="eventprop",
        default=s,
        choices=["eventprop", "norse"],
        metavar="JUMPS",
        help="train --model eventprop_snn by EventProp (the adjoint method; Wunderlich & "
        "Pehle 2021) with its exact jumps (default) or Norse's adjoint ('norse'), loss "
        "ce_max_membrane by default; without it that model trains by BPTT with the "
        "dataset's default loss (mse on the digits: add --loss ce_max_membrane for the "
        "paper's; docs/training_methods.md)",
    )
    o.add_argument(
        "--delay-lr-scale",
        type=float,
        default=s,
        help="learning rate of the synaptic delays (DelayedLinear, model delay_snn) as a "
        "multiple of --lr (default 100, the authors'; no weight decay on delays)",
    )
    o.add_argument("--seed", type=int, default=s, help="default 0")


def _numbers(text: str) -> list[float]:
    """A comma-separated list of numbers (``--decolle-reg-u 0,1e-2,1e-2``)."""
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, got {text!r}"
        ) from None
