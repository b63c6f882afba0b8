"""The model zoo: the architectures of the field, built from spikeflow's neurons.

Every model takes time-major input ``[T, B, C, H, W]`` (or ``[T, B, C, L]`` for 1-d
models) and returns ``[T, B, num_classes]``; :func:`create_model` builds one by name.
"""

from spikeflow.models.registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model"]
