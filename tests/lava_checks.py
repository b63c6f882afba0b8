"""Lava's bit-accurate LIF and Dense processes and Lava-DL's netx weight path,
transcribed in numpy from their code (Lava and Lava-DL cannot be installed here), as the
references of ``tests/test_loihi_neuron.py`` and ``tests/test_loihi_netx.py``.

Sources (read, not copied):

* ``lava-nc/lava`` ``src/lava/proc/lif/models.py`` at commit
  ``001dbd199314328615397fadabdd00be026f8b4c``: ``AbstractPyLifModelFixed``
  (``__init__``: ``ds_offset = 1``, ``dm_offset = 0``, 24-bit ``u``/``v``,
  ``decay_shift = 12``, ``vth_shift = act_shift = 6``; ``scale_bias``;
  ``subthr_dynamics``; ``reset_voltage``) and ``PyLifModelBitAcc``
  (``scale_threshold``, ``spiking_activation``: ``v > vth << 6``). State and input
  arrays are numpy ``int32`` as its ``LavaPyType`` declarations (the ``Dense`` process
  sends ``int32``).
* ``lava-nc/lava`` ``src/lava/proc/dense/models.py`` at ``077127b6b37065d6d7e0ef696804434587d48666``
  (``PyDenseModelBitAcc.run_spk``: clip and truncate the weights once, send the buffer
  of the previous step, then accumulate and shift by ``weight_exp``) and
  ``src/lava/utils/weightutils.py`` at ``19ad0c1e9b0eddbf76ab129d3a00f917b75c8b06``
  (``determine_sign_mode``, ``clip_weights``, ``truncate_weights``).
* ``lava-nc/lava-dl`` ``src/lava/lib/dl/netx/utils.py`` at
  ``cce4b57c56e4044079f51e7f4af70a449bacc014`` (``optimize_weight_bits``, which
  ``netx/hdf5.py``'s ``create_dense`` applies to the stored weights).
"""

from __future__ import annotations

import numpy as np

M = 2**23  # max_uv_val


def lava_lif_bitacc(a_in, *, du, dv, vth, bias_mant=0, bias_exp=0):
    """Lava's ``PyLifModelBitAcc`` over ``a_in`` ``[T, ...]`` (int32 values), from zero
    state. Returns ``(spikes, u, v)`` per step, ``int64`` arrays (``v`` after reset)."""
    a_in = np.asarray(a_in).astype(np.int32)
    u = np.zeros(a_in.shape[1:], np.int32)
    v = np.zeros(a_in.shape[1:], np.int32)
    bias_mant = np.asarray(bias_mant, dtype=np.int16)
    bias_exp = np.asarray(bias_exp, dtype=np.int16)
    vth = np.int32(vth)
    spikes, us, vs = [], [], []
    for a in a_in:
        # scale_bias (every step) and scale_threshold
        mant = bias_mant.copy().astype(np.int32)
        bias = np.where(
            bias_exp >= 0, np.left_shift(mant, bias_exp), np.right_shift(mant, -bias_exp)
        )
        effective_vth = np.left_shift(vth, 6)
        # subthr_dynamics: current
        decay_const_u = du + 1
        decayed_curr = np.int64(u) * (4096 - decay_const_u)
        decayed_curr = np.sign(decayed_curr) * np.right_shift(np.abs(decayed_curr), 12)
        decayed_curr = decayed_curr.astype(np.int32)
        activation_in = np.left_shift(a, 6)
        decayed_curr += activation_in
        wrapped_curr = np.where(decayed_curr > M, decayed_curr - 2 * M, decayed_curr)
        wrapped_curr = np.where(wrapped_curr <= -M, decayed_curr + 2 * M, wrapped_curr)
        u[:] = wrapped_curr
        # subthr_dynamics: voltage
        decay_const_v = dv + 0
        neg_voltage_limit = -np.int32(M) + 1
        pos_voltage_limit = np.int32(M) - 1
        decayed_volt = np.int64(v) * (4096 - decay_const_v)
        decayed_volt = np.sign(decayed_volt) * np.right_shift(np.abs(decayed_volt), 12)
        decayed_volt = decayed_volt.astype(np.int32)
        updated_volt = decayed_volt + u + bias
        v[:] = np.clip(updated_volt, neg_voltage_limit, pos_voltage_limit)
        # spiking_activation, reset_voltage
        s = v > effective_vth
        v[s] = 0
        spikes.append(s.astype(np.int64))
        us.append(u.astype(np.int64))
        vs.append(v.astype(np.int64))
    return np.stack(spikes), np.stack(us), np.stack(vs)


# ---- the netx Dense path -------------------------------------------------------------


def netx_optimize_weight_bits(weight):
    """Lava-DL ``netx.utils.optimize_weight_bits``: ``(weight, num_weight_bits,
    weight_exponent)``; ``weight`` shifted left by ``scale_bits`` (numpy's left shift
    by a negative count gives 0)."""
    max_weight, min_weight = np.max(weight), np.min(weight)
    if max_weight < 0:
        is_signed, scale = 0, -256 / min_weight
    elif min_weight >= 0:
        is_signed, scale = 0, 255 / max_weight
    else:
        is_signed = 1
        with np.errstate(divide="ignore"):
            scale = np.min([127 / max_weight, -128 / min_weight])
    scale_bits = np.floor(np.log2(scale)) + is_signed
    n = 8
    while n > 0:
        if np.sum(np.abs(weight / (2**n) - np.round(weight / (2**n)))) == 0:
            break
        n -= 1
    n -= is_signed
    num_weight_bits = 8 - scale_bits - n
    weight_exponent = -scale_bits
    weight = np.left_shift(weight.astype(np.int32), int(scale_bits))
    return weight.astype(int), int(num_weight_bits), int(weight_exponent)


def lava_dense_weights(weight, num_weight_bits, weight_exp):
    """``PyDenseModelBitAcc``'s first ``run_spk``: ``clip_weights(num_bits=8)`` then
    ``truncate_weights`` under Lava's own ``determine_sign_mode``."""
    weights = weight.copy().astype(np.int32)
    if np.min(weights) >= 0:
        mode = "excitatory"
    elif np.max(weights) <= 0:
        mode = "inhibitory"
    else:
        mode = "mixed"
    mixed, inhibitory = int(mode == "mixed"), int(mode == "inhibitory")
    if inhibitory:
        weights = -weights
    weights = np.clip(weights, (-(2**8)) * mixed, 2**8 - 1)
    if inhibitory:
        weights = -weights
    weights = weights.astype(np.int32)
    if inhibitory:
        weights = -weights
    truncate = 8 - num_weight_bits + mixed
    weights = (weights >> truncate) << truncate
    if inhibitory:
        weights = -weights
    return weights


def lava_dense_accumulate(weights, weight_exp, spikes):
    """One step's ``a_accum`` shifted by ``weight_exp`` (binary spikes)."""
    a_accum = weights[:, spikes.astype(bool)].sum(axis=1)
    if weight_exp > 0:
        return np.left_shift(a_accum, weight_exp)
    return np.right_shift(a_accum, -weight_exp)


def netx_dense_synapse(stored_weight):
    """The integer weights a netx Dense block's synapse effectively applies to one
    spike of each input: the stored weights through ``optimize_weight_bits``, the
    clip and truncation, and the exponent (read column by column)."""
    weight, bits, exponent = netx_optimize_weight_bits(np.asarray(stored_weight))
    weights = lava_dense_weights(weight, bits, exponent)
    columns = []
    for j in range(weights.shape[1]):
        one = np.zeros(weights.shape[1], np.int64)
        one[j] = 1
        columns.append(lava_dense_accumulate(weights, exponent, one))
    return np.stack(columns, axis=1)


def lava_dense_network(spikes, layers):
    """A chain of netx Dense blocks as Lava runs them: each Dense sends the sums of the
    previous step (``a_buff`` starts at 0), then its LIF steps. ``spikes`` ``[T, N_in]``
    binary, ``layers`` a list of ``(stored_weight, neuron_kwargs)``. Returns the output
    spikes ``[T, N_out]``."""
    x = np.asarray(spikes).astype(np.int64)
    for stored, neuron in layers:
        weight, bits, exponent = netx_optimize_weight_bits(np.asarray(stored))
        weights = lava_dense_weights(weight, bits, exponent)
        a_buff = np.zeros(weights.shape[0], np.int64)
        a_in = []
        for s in x:
            a_in.append(a_buff)
            a_buff = lava_dense_accumulate(weights, exponent, s)
        x, _, _ = lava_lif_bitacc(np.stack(a_in), **neuron)
    return x
