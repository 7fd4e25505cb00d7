# Quick start: `make demo` and `make test` set everything up on a fresh machine with only Python.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
EXT_SOURCES := $(shell find csrc python -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' 2>/dev/null)

TORCH_STAMP := $(VENV)/.torch-version

.PHONY: setup test test-py test-cpp demo bench bench-quick clean gpu-check FORCE

setup: $(VENV)/.installed

$(VENV)/.deps:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel ninja
	# torch is pinned and installed on its own: letting pip resolve it pulls gigabytes of CUDA wheels.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==$(TORCH_VERSION)
	touch $@

# The torch version the extension is built against: rewritten only when it changes, so a torch upgrade (or
# downgrade) in the venv rebuilds ripu_kernels._C instead of leaving a stale one behind. Every pip install below
# is constrained to that torch (constraints.txt), so pip never resolves another one.
$(TORCH_STAMP): FORCE | $(VENV)/.deps
	@v=$$($(PY) -c "import importlib.metadata as m; print(m.version('torch'))"); \
	  [ "$$(cat $@ 2>/dev/null)" = "$$v" ] || { echo "$$v" > $@; echo "torch==$$v" > $(VENV)/constraints.txt; }

# The package with its extension and the extras the demo and the tests use (driver, test, triton).
$(VENV)/.installed: $(VENV)/.deps $(TORCH_STAMP) setup.py pyproject.toml $(EXT_SOURCES)
	MAX_JOBS=$${MAX_JOBS:-2} $(PY) -m pip install -q --no-build-isolation -c $(VENV)/constraints.txt \
	  -e ".[driver,test,triton]"
	touch $@

test: setup
	$(MAKE) test-cpp
	$(MAKE) test-py

test-py: setup
	# Two pytest workers on two cores: one intra-op thread each, or OpenMP spin-waits oversubscribe the machine.
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 tests

test-cpp: setup
	@if [ -f CMakeLists.txt ] && [ -d tests/cpp ]; then \
	  cmake -S . -B build/cmake -DCMAKE_BUILD_TYPE=Release >/dev/null && \
	  cmake --build build/cmake -j 2 && \
	  ctest --test-dir build/cmake --output-on-failure; \
	else echo "no C++ tests"; fi

demo: setup
	$(VENV)/bin/ripu demo --out demo-out

bench: setup
	$(PY) -m bench --out bench-out

bench-quick: setup
	$(PY) -m bench --quick --out bench-out

# On a machine with a CUDA GPU: rebuild _C for the local arch with that machine's own torch/triton, run the GPU
# tests, compute-sanitizer and the GPU benchmark; everything lands in $OUT (default gpu-check-out/). Uses
# python3 from PATH (not .venv: the GPU machine brings its own torch). See tools/gpu_check.sh.
gpu-check:
	tools/gpu_check.sh

clean:
	rm -rf build $(VENV) *.egg-info ripu_kernels/_C*.so demo-out bench-out
