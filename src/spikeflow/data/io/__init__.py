"""One reader per event file format, each returning :class:`~spikeflow.data.EventRecording`.

Every ``read_<format>(path, ...)`` has a ``decode_<format>(raw_bytes, ...)`` twin where
the format is a plain byte stream; :func:`read_events` picks the reader from the file's
magic bytes and extension. The formats, what each reader validates and which extras it
needs are listed in ``docs/data_formats.md``. The hot decoders (ATIS ``.bin``, AEDAT
3.x, AEDAT 1.0/2.0) also have a compiled C fast path: :func:`set_decoder` /
:func:`use_decoder` (or ``SPIKEFLOW_DECODER``) choose ``"auto"``, ``"numpy"`` or ``"c"``.
The 40-bit spike files and Lava-DL's ``.npy`` spike arrays also have writers, and dense
spike tensors a converter to events (:mod:`spikeflow.data.io.spike_files`).
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

from spikeflow.data.events import EventRecording
from spikeflow.data.io._common import read_head
from spikeflow.data.io._native import DECODERS, get_decoder, set_decoder, use_decoder
from spikeflow.data.io.aedat2 import (
    AEDAT2_LAYOUTS,
    Aedat2Header,
    decode_aedat2,
    parse_aedat2_header,
    read_aedat2,
    read_aedat2_header,
)
from spikeflow.data.io.aedat4 import (
    AEDAT4_IMU_DTYPE,
    AEDAT4_TRIGGER_DTYPE,
    Aedat4Info,
    Aedat4Stream,
    decode_aedat4,
    parse_aedat4,
    read_aedat4,
    read_aedat4_imu,
    read_aedat4_info,
    read_aedat4_triggers,
)
from spikeflow.data.io.aedat31 import (
    GESTURE_LABEL_DTYPE,
    decode_aedat31,
    read_aedat31,
    read_gesture_labels,
    split_by_labels,
)
from spikeflow.data.io.atis_bin import decode_atis_bin, read_atis_bin
from spikeflow.data.io.hdf5_audio import SpikingAudioFile, read_spiking_audio
from spikeflow.data.io.hdf5_ntidigits import NTIDIGITS_DIGITS, NTidigitsFile, parse_ntidigits_key
from spikeflow.data.io.matlab import load_mat_variables, read_asl_dvs, read_stmnist
from spikeflow.data.io.numpy_layouts import (
    load_npy,
    read_dvs_lip,
    read_es_imagenet,
    read_hardvs,
    read_numpy_events,
)
from spikeflow.data.io.prophesee import (
    PROPHESEE_PLUGIN_SENSORS,
    decode_dat,
    decode_evt2,
    decode_evt3,
    parse_prophesee_header,
    read_dat,
    read_evt2,
    read_evt3,
    read_prophesee_raw,
)
from spikeflow.data.io.slayer_bs1 import decode_bs1, read_bs1
from spikeflow.data.io.spike_files import (
    encode_atis_bin,
    encode_bs1,
    read_np_spikes,
    spikes_to_events,
    write_atis_bin,
    write_bs1,
    write_np_spikes,
)
from spikeflow.data.io.wav import AudioClip, WavInfo, decode_wav, read_wav, wav_info
from spikeflow.errors import ConfigurationError

__all__ = [
    "AEDAT2_LAYOUTS",
    "AEDAT4_IMU_DTYPE",
    "AEDAT4_TRIGGER_DTYPE",
    "DECODERS",
    "GESTURE_LABEL_DTYPE",
    "NTIDIGITS_DIGITS",
    "PROPHESEE_PLUGIN_SENSORS",
    "Aedat2Header",
    "Aedat4Info",
    "Aedat4Stream",
    "AudioClip",
    "NTidigitsFile",
    "SpikingAudioFile",
    "WavInfo",
    "decode_aedat2",
    "decode_aedat4",
    "decode_aedat31",
    "decode_atis_bin",
    "decode_bs1",
    "decode_dat",
    "decode_evt2",
    "decode_evt3",
    "decode_wav",
    "encode_atis_bin",
    "encode_bs1",
    "get_decoder",
    "load_mat_variables",
    "load_npy",
    "parse_aedat2_header",
    "parse_aedat4",
    "parse_ntidigits_key",
    "parse_prophesee_header",
    "read_aedat2",
    "read_aedat2_header",
    "read_aedat4",
    "read_aedat4_imu",
    "read_aedat4_info",
    "read_aedat4_triggers",
    "read_aedat31",
    "read_asl_dvs",
    "read_atis_bin",
    "read_bs1",
    "read_dat",
    "read_dvs_lip",
    "read_es_imagenet",
    "read_events",
    "read_evt2",
    "read_evt3",
    "read_gesture_labels",
    "read_hardvs",
    "read_np_spikes",
    "read_numpy_events",
    "read_prophesee_raw",
    "read_spiking_audio",
    "read_stmnist",
    "read_wav",
    "set_decoder",
    "spikes_to_events",
    "split_by_labels",
    "use_decoder",
    "wav_info",
    "write_atis_bin",
    "write_bs1",
    "write_np_spikes",
]


def read_events(path: str | PathLike) -> EventRecording:
    """Read a self-describing event file, choosing the reader from its content and
    extension.

    An AEDAT version line (``#!AER-DAT4``, ``#!AER-DAT3``, ``#!AER-DAT2``/``1``) names the
    reader whatever the extension. Otherwise the extension does: ``.aedat4`` (AEDAT
    4), ATIS ``.bin`` (N-MNIST 34x34; N-Caltech101 needs ``read_atis_bin(path, None)``),
    SLAYER ``.bs1``, Prophesee ``.raw`` (EVT 2.0/3.0 from the header), ``.aedat`` (jAER
    AEDAT 1.0/2.0, as is any other file whose first byte is ``#``) and Prophesee
    ``.dat``, each reader with its default arguments. A file whose version line is
    damaged thus reaches its extension's reader, which names the bad bytes.

    Raises:
        ConfigurationError: (a ValueError) a format this function cannot tell apart on
            its own (``.mat``, ``.npy``/``.npz``, ``.h5``): call its reader directly.
        DataFormatError: an empty file (whatever its extension), or whatever the chosen
            reader rejects.
    """
    suffix = Path(path).suffix.lower()
    head = read_head(path, 16)
    # The content, where it names the format ...
    if head.startswith(b"#!AER-DAT4"):
        return read_aedat4(path)
    if head.startswith(b"#!AER-DAT3"):
        return read_aedat31(path)
    if head.startswith(b"#!AER-DAT"):  # 1.0/2.0, or a version read_aedat2 names as unsupported
        return read_aedat2(path)
    # ... else the extension (a damaged magic is then reported by the format's reader).
    # Headerless binary formats first: their first byte is data (an N-Caltech101 event
    # at x = 35 starts with "#").
    if suffix == ".aedat4":
        return read_aedat4(path)
    if suffix == ".bin":
        return read_atis_bin(path)
    if suffix == ".bs1":
        return read_bs1(path)
    if suffix == ".raw":
        return read_prophesee_raw(path)
    if suffix == ".dat":  # a headerless .dat's first byte is a timestamp's, "#" or not
        return read_dat(path)
    if head.startswith(b"#") or suffix == ".aedat":  # AEDAT 1.0 may have no version line
        return read_aedat2(path)
    raise ConfigurationError(
        f"{path}: cannot choose a reader for {suffix!r} files (neither the first bytes nor "
        "the extension name a format read_events reads); call the format's reader "
        "(read_stmnist, read_asl_dvs, read_dvs_lip, read_hardvs, read_es_imagenet, "
        "SpikingAudioFile, NTidigitsFile, ...)"
    )
