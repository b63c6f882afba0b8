"""One reader per event file format, each returning :class:`~spikeflow.data.EventRecording`."""
