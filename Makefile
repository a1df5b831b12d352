# Commands: `make demo`, `make test` and `make lint` (ruff + the import layers of pyproject.toml).
# The venv is rebuilt only when pyproject.toml or .ci/requirements-nodeps.txt changes or the
# interpreter is not a working Python 3.10.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
OUT    ?= out/demo
JOBS   ?= 2

.PHONY: venv demo test lint bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml .ci/find-python .ci/requirements-nodeps.txt
	@if ! $(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' 2>/dev/null; then \
		rm -rf $(VENV); py=$$(.ci/find-python) && echo "creating $(VENV) from $$py" && "$$py" -m venv $(VENV); \
	fi
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps -r .ci/requirements-nodeps.txt
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/deploy compile examples/models/digits_snn_imc.pt --target imc --compare imc-adc --data digits -o $(OUT)

test: $(STAMP)
	$(PY) -m pytest -q -n $(JOBS) --dist loadgroup tests

lint: $(STAMP)
	$(VENV)/bin/ruff check deploy hwmodels quant tests examples benchmarks
	$(VENV)/bin/lint-imports --no-logo

bench: $(STAMP)
	$(PY) benchmarks/bench_scale.py

clean:
	rm -rf out .pytest_cache
