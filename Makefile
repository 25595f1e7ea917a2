# Ephemera: `make run` starts the whole stack here; `make test` runs every check.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ephemera-installed

.PHONY: run test install redis-server postgresql chromium models migrate lint typecheck check-infra bench clean

$(STAMP): pyproject.toml infra/docker/constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# Runtime dependencies pinned by the constraints the image uses too.
	$(PY) -m pip install --quiet -c infra/docker/constraints.txt -e '.[dev]'
	touch $@

install: $(STAMP) redis-server postgresql

# The Debian redis-server, installed when missing. Never used on its default
# port: `make run` starts one on 6380 and the tests one on a free port.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing redis-server (Debian package)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	}

# Debian's PostgreSQL binaries, installed when missing: the tests run on a
# cluster they initdb into a temporary directory, on a free port.
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "installing postgresql (Debian package)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	}

# Debian's chromium and chromedriver, for the web page's browser test; installed when missing.
chromium:
	@{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || { \
	  echo "installing chromium and chromium-driver (Debian packages)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	}

models: $(STAMP)
	$(PY) manage.py fetch_models

migrate: $(STAMP)
	$(PY) manage.py migrate --noinput

run: install models migrate
	scripts/run.sh

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(STAMP)
	$(PY) -m mypy

check-infra:
	PYTHON=$(PYTHON) infra/tools/install.sh

test: install models chromium lint typecheck check-infra
	$(PY) -m pytest
	# The database-backed tests once more on SQLite, the embedded default of `make run`.
	EPHEMERA_TEST_DATABASE=sqlite $(PY) -m pytest -q tests/backend tests/workers/test_sweeper.py

bench: install models
	$(PY) bench/pipeline.py
	$(PY) bench/cartoonize.py
	$(PY) bench/faces.py

clean:
	rm -rf $(VENV) .venv-tools .pytest_cache .mypy_cache .ruff_cache
