"""Argument checks the layers use (each raises ConfigurationError); they live in
:mod:`spikeflow._checks`."""

from __future__ import annotations

from spikeflow._checks import check_int, check_real

__all__ = ["check_int", "check_real"]
