# evidence-vault: the two commands are `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= data
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint format bench verifier install ffmpeg wrk nginx chromium promtool ceph clean

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

# wrk (the HTTP load generator bench/api.py drives the list load with) where it is missing.
wrk:
	@if ! command -v wrk >/dev/null 2>&1; then \
	  echo "installing wrk from the system's packages"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq wrk >/dev/null; \
	fi

# nginx (the static file server bench/baselines.py streams the same Range requests from) where
# it is missing; the bench starts its own, on a free loopback port with a temporary config.
nginx:
	@if ! command -v nginx >/dev/null 2>&1 && ! [ -x /usr/sbin/nginx ]; then \
	  echo "installing nginx from the system's packages"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq nginx >/dev/null; \
	fi

# Chromium (and a CJK font, for readable screenshots) from the system's packages where missing:
# the reviewer console's browser tests drive it headless; no browser is ever downloaded.
chromium:
	@if ! command -v chromium >/dev/null 2>&1 || ! fc-list :lang=zh 2>/dev/null | grep -q .; then \
	  echo "installing chromium from the system's packages"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null; \
	fi

# promtool (checks deploy/prometheus/alerts.yml in the tests) from the Debian package prometheus,
# where missing. The package's postinst would start a Prometheus server: a temporary policy-rc.d
# forbids that (containers, CI, developers' machines). Not fatal: the test then says it skipped.
promtool:
	@if ! command -v promtool >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing promtool (package prometheus) from the system's packages"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  POLICY=; if [ ! -e /usr/sbin/policy-rc.d ]; then POLICY=1; \
	    printf '#!/bin/sh\nexit 101\n' | $$SUDO tee /usr/sbin/policy-rc.d >/dev/null; \
	    $$SUDO chmod 755 /usr/sbin/policy-rc.d; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	    --no-install-recommends prometheus >/dev/null 2>&1 \
	    || echo "promtool not installed: the alert-rule checks will be skipped"; \
	  if [ -n "$$POLICY" ]; then $$SUDO rm -f /usr/sbin/policy-rc.d; fi; \
	fi

# A single-node Ceph (monitor, bluestore OSD, radosgw) from the system's packages where missing:
# the S3 blob store's tests start one per session (tests/storage/ceph_fixture.py). Not fatal:
# those tests then say why they skipped.
ceph:
	@if ! command -v radosgw >/dev/null 2>&1 || ! command -v ceph-osd >/dev/null 2>&1 \
	    || ! command -v ceph-mon >/dev/null 2>&1 || ! command -v radosgw-admin >/dev/null 2>&1; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    echo "installing ceph-mon ceph-osd radosgw ceph-common from the system's packages"; \
	    if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	      --no-install-recommends ceph-mon ceph-osd radosgw ceph-common >/dev/null 2>&1 \
	      || echo "Ceph not installed: the S3 blob store's tests will be skipped"; \
	  fi; \
	fi

run: $(STAMP) ffmpeg
	$(BIN)/evault init --data $(DATA)
	@echo "Then, in another terminal: $(BIN)/evault demo --data $(DATA)   (recordings -> dock -> case -> package -> offline verification)"
	$(BIN)/evault serve --data $(DATA) --print-admin-token

# Two workers, whole modules each (tests/conftest.py: the scheduler, the longest first); each
# worker has its own embedded PostgreSQL (or, with EVAULT_TEST_DSN, its own databases on it).
# TEST_WORKERS=0 runs the suite in one process. Tests marked `alone` (latency bounds, faults
# that must meet the load) run afterwards in one process, with the machine to themselves.
TEST_WORKERS ?= 2

test: $(STAMP) ffmpeg chromium promtool ceph
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadscope -m "not alone"
	$(BIN)/python -m pytest -q -m alone

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy verify vault ingest api
	$(BIN)/lint-imports --no-cache
	$(BIN)/python tools/check_sql.py

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Each benchmark prints ratios against a baseline measured in the same run.
bench: $(STAMP) ffmpeg wrk nginx ceph
	$(BIN)/python bench/ledger.py
	$(BIN)/python bench/acquire.py
	$(BIN)/python bench/media.py
	$(BIN)/python bench/redaction.py
	$(BIN)/python bench/verify.py
	$(BIN)/python bench/crypto.py
	$(BIN)/python bench/api.py
	$(BIN)/python bench/baselines.py
	$(BIN)/python bench/cli.py
	$(BIN)/python bench/s3.py

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache

# The offline verifier as one file: runs with Python 3.11+ and `cryptography`, nothing else.
verifier:
	$(PYTHON) tools/build_verifier.py
