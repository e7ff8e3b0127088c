"""Calibration sources and INT8 quantizers (ONNX Runtime static QDQ, OpenVINO/NNCF)."""
