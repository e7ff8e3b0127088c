"""Inference backends. Each runtime is imported lazily inside its own module."""

from .registry import available_backends, get_backend

__all__ = ["available_backends", "get_backend"]
