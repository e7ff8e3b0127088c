"""How a target's device string is read, as OpenVINO reads it: GPU.1 is a GPU; AUTO:GPU,CPU is AUTO over
the devices it lists. One reader, so the install hint, GPU-memory sampling, the can-it-run-here check and
OpenVINO's own checks agree on what a device string means."""

from __future__ import annotations


def device_family(device: str) -> str:
    """The device's family in capitals: 'GPU' for GPU.1, 'AUTO' for AUTO:GPU,CPU, 'DLA' for DLA."""
    return str(device).split(":")[0].split(".")[0].strip().upper()


def device_index(device: str) -> int | None:
    """N for GPU.N, None for a device named without an index."""
    _, _, index = str(device).partition(":")[0].partition(".")
    return int(index) if index.isdigit() else None


def devices_listed(device: str) -> list[str]:
    """The devices AUTO (or MULTI-style) names after its colon, as written: ['GPU.1', 'CPU'] for
    AUTO:GPU.1,CPU; [] when none are listed."""
    _, _, listed = str(device).partition(":")
    return [name.strip() for name in listed.split(",") if name.strip()]
