# The two commands of the README: `make run` and `make test`. Both set up .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest bench postgres chromium kafka-jars kafka keycloak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/tsunagu up --demo

# PostgreSQL for the tests: Debian's server, installed when missing, started on 127.0.0.1:5432
# with a `test` database (never skip its tests).
postgres:
	@bash ops/machine/postgres.sh

# Apache Kafka's jars, fetched once from Maven Central into ~/.cache/tsunagu (outside the tree).
kafka-jars: $(STAMP)
	@$(BIN)/python -c "from ops.kafka.broker import kafka_jars; kafka_jars()"

# One Kafka broker on 127.0.0.1:9092 in the foreground (data in var/kafka), for trying by hand.
kafka: kafka-jars
	$(BIN)/python -m ops.kafka.broker

# Keycloak, the OIDC tests' identity provider, fetched once from Maven Central likewise.
keycloak: $(STAMP)
	@$(BIN)/python -c "from ops.keycloak.server import keycloak_dist; keycloak_dist()"

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

pytest: $(STAMP) postgres chromium kafka-jars keycloak
	$(BIN)/pytest

test: lint typecheck pytest

bench: $(STAMP) postgres kafka-jars
	$(BIN)/python -m ops.bench.ingest
	$(BIN)/python -m ops.bench.connectors
	$(BIN)/python -m ops.bench.consent
	$(BIN)/python -m ops.bench.audit
	$(BIN)/python -m ops.bench.api
	$(BIN)/python -m ops.bench.scale

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
