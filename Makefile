# Two commands for a fresh machine: `make run` and `make test`. Both build .venv when missing.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# torch/torchvision pinned to the builds pip finds on this machine's disk.
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: install run test test-long lint bench clean

$(BIN)/sweeps: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/sweeps

install: $(BIN)/sweeps

run: install
	$(BIN)/sweeps run examples/fmnist_vit_quick.yaml

# The seed reproduction on CPU takes over ten minutes, so it has its own target (CI runs both).
test: install
	$(BIN)/python -m pytest -m "not long" $(PYTEST_ARGS)

test-long: install
	$(BIN)/python -m pytest -m long $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check api worker shared cli tests bench
	$(BIN)/ruff format --check api worker shared cli tests bench
	$(BIN)/mypy api shared

bench: install
	$(BIN)/python bench/train_throughput.py

clean:
	rm -rf $(VENV) .sweeps
