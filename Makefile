# The two commands of the README: `make run` and `make test`. Both set up .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest bench postgres chromium clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/tsunagu up --demo

# PostgreSQL runs on every development and CI machine; start it if it is down (never skip its tests).
postgres:
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && exit 0; sleep 1; done; echo "PostgreSQL did not start" >&2; exit 1

# The browser tests drive Debian's Chromium (Playwright's own browser downloads are not used);
# a Japanese font makes the pages' screenshots readable. Install both if they are missing.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@command -v chromium >/dev/null && fc-list :lang=ja | grep -q . || \
		($(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends chromium fonts-ipafont-gothic)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) postgres chromium
	$(BIN)/pytest

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python -m ops.bench.ingest
	$(BIN)/python -m ops.bench.connectors
	$(BIN)/python -m ops.bench.consent
	$(BIN)/python -m ops.bench.audit
	$(BIN)/python -m ops.bench.api
	$(BIN)/python -m ops.bench.scale

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
