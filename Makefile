# Two commands on a fresh clone: `make run` (demo, then the hub on embedded defaults) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test setup bench clean

$(BIN)/coexhub: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

setup: $(BIN)/coexhub

run: setup
	$(BIN)/coexhub init
	$(BIN)/coexhub demo
	$(BIN)/coexhub up

test: setup
	$(BIN)/pytest -n 2 -q

bench: setup
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) .coexhub
