# grok-tui: `make run` opens the app, `make test` runs the tests; both set up .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
# torch==2.13.0: the CPU build on a machine that has it on disk, CUDA from PyPI on a GPU box.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: run test test-kernels bench install clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/grok-tui $(ARGS)

test: $(STAMP)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# The engine and snapshot tests under two other kernel sets: AVX2 everywhere (what an
# AVX-512 machine would not pick by itself) and SSE with ATen's scalar kernels.
KERNEL_SETS := "ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 OPENBLAS_CORETYPE=Haswell" \
	"ATEN_CPU_CAPABILITY=default MKL_ENABLE_INSTRUCTIONS=SSE4_2 OPENBLAS_CORETYPE=Prescott"
test-kernels: $(STAMP)
	@for set in $(KERNEL_SETS); do \
	  echo "== kernels: $$set"; \
	  env $$set $(PY) bench/machine.py && \
	  env $$set $(VENV)/bin/pytest tests/engine tests/tui/test_snapshots.py tests/tui/test_result_table.py -p no:cacheprovider || exit 1; \
	done

bench: $(STAMP)
	$(PY) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
