# Two commands do all the setup: `make demo` and `make test` create .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
OUT ?= runs/demo

.PHONY: demo test bench install clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Re-install only when the project's dependency list changed.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/edgedistill build --target x86-cpu --out $(OUT)

test: $(STAMP)
	$(PY) -m pytest -q tests

# The CPU figures in docs/backends.md and docs/benchmarking.md (the GPU benchmarks run from benchmarks/gpu_session.sh).
bench: $(STAMP)
	$(PY) benchmarks/backend_table.py
	$(PY) benchmarks/int8_fallback.py
	$(PY) benchmarks/ov_throughput.py

clean:
	rm -rf runs build dist *.egg-info
