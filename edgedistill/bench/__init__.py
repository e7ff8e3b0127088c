"""Latency harness, fidelity metrics, host description, and the bench stage."""
