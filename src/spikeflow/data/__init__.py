"""Neuromorphic data: readers for sensor files, datasets, representations, transforms."""

from spikeflow.data.events import EVENT_DTYPE, EventRecording, format_error, make_events

__all__ = ["EVENT_DTYPE", "EventRecording", "format_error", "make_events"]
