# The two commands a newcomer needs:  `make demo` (main job, embedded default) and `make test`.
# Both create .venv and install everything on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# torch comes from the machine's local wheel cache here; pin it explicitly so pip never resolves a
# multi-GB CUDA build from the index by accident.
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: install lint test test-fast demo clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev,efficientnet]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

test: $(STAMP)
	$(BIN)/pytest -q

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

demo: $(STAMP)
	$(BIN)/vl2v demo --out results

clean:
	rm -rf $(VENV) results
