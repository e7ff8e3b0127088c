"""Inference backends. Each runtime is imported lazily inside its own module."""

from .registry import available_backends, get_backend
from .signal_stack import kept_signal_stack  # quantize's NNCF calls need it around OpenVINO too

__all__ = ["available_backends", "get_backend", "kept_signal_stack"]
