# The two commands a newcomer needs: `make demo` (run the portal) and `make test` (run every test).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app wsgi
HOST ?= 127.0.0.1
PORT ?= 5000
# Links in the mails the demo writes point at the port it is served on (unless set otherwise).
PORTAL_BASE_URL ?= http://$(HOST):$(PORT)
export PORTAL_BASE_URL

.PHONY: demo demo-reset test install install-dev translations extract-messages lint format security bench mutation serve clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime: $(BIN)/python requirements.txt
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.runtime translations
install-dev: $(VENV)/.dev translations

## Compile the interface translations (Chinese is the default language, English the alternative).
translations: $(VENV)/.runtime
	$(BIN)/pybabel -q compile -d portal/translations

## Re-extract the translatable texts and merge them into the catalogues (then translate what is new).
extract-messages: $(VENV)/.runtime
	$(BIN)/pybabel -q extract -F babel.cfg -k _l -k lazy_gettext -k N_ -o portal/translations/messages.pot --no-location --no-wrap --sort-output .
	$(BIN)/pybabel -q update -i portal/translations/messages.pot -d portal/translations --no-fuzzy-matching --ignore-obsolete --no-wrap

## Run the demo: migrate the embedded SQLite database, load the demo network, serve on http://127.0.0.1:5000
## (PORT=8080 make demo for another port) with the periodic tasks running in-process.
demo: install
	$(FLASK) db upgrade
	$(FLASK) demo load
	$(FLASK) demo serve --host $(HOST) --port $(PORT)

## Start the demo again from scratch: delete its database and files (instance/), then `make demo`.
demo-reset:
	rm -rf instance/portal.db instance/uploads instance/mail

serve: install
	$(FLASK) demo serve --host $(HOST) --port $(PORT)

## Run the whole test suite (SQLite always; PostgreSQL, Redis and Chromium when present), one process
## per core (TEST_WORKERS=0 runs it in this process). worksteal: a process that runs out of tests takes
## half of another's, so no module of few slow tests (fuzzing, browser walks) is left to run alone at the end.
## The 25 slowest steps are listed at the end, to see where the time goes.
TEST_WORKERS ?= auto
test: install-dev
	$(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal --durations=25

lint: install-dev
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy portal

## Security checks: bandit (medium severity and up) on the code; known vulnerabilities in the pinned requirements.
security: install-dev
	$(BIN)/bandit -q -ll -r portal config.py wsgi.py celery_worker.py
	BIN=$(BIN) .ci/audit-dependencies

## Benchmarks against PostgreSQL (BENCH_DATABASE_URL): prints the table, appends it to bench/RESULTS.md.
## BENCH_ARGS=--reuse keeps already generated databases; BENCH_ARGS=--quick is a tenfold smaller trial.
bench: install-dev
	$(BIN)/python -m bench.run --record bench/RESULTS.md $(BENCH_ARGS)

## Mutation testing (not in CI): mutmut mutates the modules that hold the rules and transitions and runs
## the fast tests that pin them (pyproject.toml [tool.mutmut]); scores and survivors: docs/quality.md.
## Results are cached in mutants/ (a changed function is tested again); `rm -rf mutants` starts afresh.
MUTATION_WORKERS ?= 2
mutation: install-dev
	TEST_BACKENDS=sqlite $(BIN)/mutmut run --max-children $(MUTATION_WORKERS)
	$(BIN)/mutmut results

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) instance .pytest_cache .ruff_cache .mypy_cache mutants
