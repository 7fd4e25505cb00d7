# Quick start: `make demo` and `make test` set everything up on a fresh machine with only Python.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
EXT_SOURCES := $(shell find csrc python -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' 2>/dev/null)

.PHONY: setup test test-py test-cpp demo bench bench-quick clean

setup: $(VENV)/.installed

$(VENV)/.deps:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel ninja
	# torch is pinned and installed on its own: letting pip resolve it pulls gigabytes of CUDA wheels.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==$(TORCH_VERSION)
	# ... and every later install is constrained to the torch now in the venv
	$(PY) -c "import torch; print('torch==' + torch.__version__)" > $(VENV)/constraints.txt
	touch $@

# The package with its extension and the extras the demo and the tests use (driver, test, triton).
$(VENV)/.installed: $(VENV)/.deps setup.py pyproject.toml $(EXT_SOURCES)
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

clean:
	rm -rf build $(VENV) *.egg-info ripu_kernels/_C*.so demo-out bench-out
