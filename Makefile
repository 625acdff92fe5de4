# rama monorepo tasks. Every target bootstraps .venv on first use.
VENV  := .venv
BIN   := $(VENV)/bin
STAMP := $(VENV)/.rama-bootstrapped
PKG_PYPROJECTS := $(wildcard packages/*/pyproject.toml)

.PHONY: bootstrap peers test test-fast lint fmt run bench clean

$(STAMP): tools/requirements-dev.txt tools/bootstrap.sh $(PKG_PYPROJECTS)
	bash tools/bootstrap.sh
	touch $(STAMP)

bootstrap: $(STAMP)

peers:
	bash tools/install-peers.sh

## test: every package's tests, tests-integration and examples
test: $(STAMP) peers
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## lint: ruff and mypy --strict over all packages
lint: $(STAMP)
	$(BIN)/ruff check packages tools tests-integration examples
	$(BIN)/ruff format --check packages tools tests-integration examples
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format packages tools tests-integration examples
	$(BIN)/ruff check --fix packages tools tests-integration examples

## run: the main job, a local proxy with sensible defaults
run: $(STAMP)
	$(BIN)/rama serve proxy $(ARGS)

## bench: peer-comparison benchmarks (loopback only, bounded in time)
bench: $(STAMP) peers
	bash tools/bench/run.sh

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build dist
