"""Latency estimates for hardware that is not here: ONNX graph cost, roofline, learned efficiency."""
