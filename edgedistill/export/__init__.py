"""ONNX export of the deployable student and parity checks against torch."""
