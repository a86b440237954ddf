# evidence-vault: the two commands are `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= data
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint format bench verifier install ffmpeg clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ is required"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# ffmpeg/ffprobe from the system's packages where they are missing.
ffmpeg:
	@if ! command -v ffmpeg >/dev/null 2>&1 || ! command -v ffprobe >/dev/null 2>&1; then \
	  echo "installing ffmpeg from the system's packages"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq ffmpeg >/dev/null; \
	fi

run: $(STAMP) ffmpeg
	$(BIN)/evault --data $(DATA) init
	$(BIN)/evault --data $(DATA) serve --print-admin-token

test: $(STAMP) ffmpeg
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy verify vault ingest api

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Each benchmark prints ratios against a baseline measured in the same run.
bench: $(STAMP) ffmpeg
	$(BIN)/python bench/ledger.py
	$(BIN)/python bench/acquire.py
	$(BIN)/python bench/media.py
	$(BIN)/python bench/verify.py
	$(BIN)/python bench/crypto.py

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache

# The offline verifier as one file: runs with Python 3.11+ and `cryptography`, nothing else.
verifier:
	$(PYTHON) tools/build_verifier.py
