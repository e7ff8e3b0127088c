"""edgedistill: distil a vision foundation model into a small student and ship it to a device."""

__version__ = "0.1.0"
