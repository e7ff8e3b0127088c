# The edgedistill runtime image: CPU backends (ONNX Runtime, OpenVINO) plus torch for distillation.
# GPU/TensorRT hosts: build FROM an NVIDIA TensorRT image instead and `pip install .[tensorrt]`.
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
RUN apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/edgedistill
COPY pyproject.toml setup.py README.md ./
COPY edgedistill ./edgedistill
COPY targets ./targets
COPY calibration ./calibration
RUN pip install .
WORKDIR /work
ENTRYPOINT ["edgedistill"]
CMD ["--help"]
