# The two commands a new user needs: `make run` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PORT   ?= 8501

.PHONY: run public publish test fuzz lint demo demo-1m demo-10m bench docs screenshots clean

## run: install, build the demo store and its public snapshot on first run (with progress), start the dashboard
##      (and /api/public/) on :$(PORT)
run: $(VENV)/.runtime
	$(PY) -m lib.cli demo --if-missing
	$(PY) -m lib.cli publish --if-missing
	@echo "Netzausbau-Monitor on http://127.0.0.1:$(PORT) (this machine only; README: Configuration)"
	$(PY) -m streamlit run serve.py --server.port $(PORT) --server.headless true --server.address 127.0.0.1

## publish: write the public snapshot (data/public/snapshot.json) from the store
publish: $(VENV)/.runtime
	$(PY) -m lib.cli publish

## public: serve only the public page and /api/public/ from the snapshot alone (no store needed), in one
##         process per core (WORKERS=n to choose)
public: $(VENV)/.runtime
	NETZAUSBAU_PUBLIC=1 $(PY) serve.py --port $(PORT) $(if $(WORKERS),--workers $(WORKERS))

## test: install (incl. Debian chromium, postgresql and a Java runtime for the browser, PostgreSQL and Spark
##       tests), lint, run the whole suite
test: $(VENV)/.dev
	scripts/ensure-debian chromium postgresql java
	$(PY) -m ruff check .
	$(PY) -m pytest

## fuzz: the property tests with fresh random examples (the suite's are fixed, see tests/conftest.py): 2,000
##       each, or the count a test sets for itself
fuzz: $(VENV)/.dev
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -q $$(grep -l "@given" tests/test_*.py)

lint: $(VENV)/.dev
	$(PY) -m ruff check .

## demo: rebuild the demo store (200k complaints); demo-1m / demo-10m for benchmark sizes
demo: $(VENV)/.runtime
	$(PY) -m lib.cli demo
demo-1m: $(VENV)/.runtime
	$(PY) -m lib.cli demo --size 1m
demo-10m: $(VENV)/.runtime
	$(PY) -m lib.cli demo --size 10m

## bench: the engine benchmark at 1M complaints (about a minute); bench/README.md has 10M and the others
bench: $(VENV)/.dev
	$(PY) bench/engine.py --complaints 1000000

## screenshots: the README's screenshots of the running demo (docs/img/*.png), offline, in headless Chromium
screenshots: $(VENV)/.dev
	scripts/ensure-debian chromium
	$(PY) scripts/screenshots.py

## docs: regenerate docs/data-formats.md from the input schema (lib/ingest/schema.py)
docs: $(VENV)/.runtime
	$(PY) -m lib.ingest.schema > docs/data-formats.md

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	touch $@

$(VENV)/.runtime: $(VENV)/.created requirements.txt constraints.txt
	$(PY) -m pip install -q -r requirements.txt -c constraints.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt -c constraints.txt
	touch $@

clean:
	rm -rf $(VENV) data/netzausbau.duckdb data/netzausbau.duckdb.wal .pytest_cache .ruff_cache
