# Two commands a fresh machine needs: `make bench` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
export RAY_AUTH_MODE ?= disabled

.PHONY: bench test clean venv browser mutants mutmut

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# torch/torchvision: pip takes the release available to this machine; no exact pin in pyproject.
$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PIP) install --quiet -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(VENV)/bin/python
	$(PIP) install --quiet -e '.[test]'
	touch $@ $(STAMP)

venv: $(STAMP)

bench: $(STAMP)
	$(VENV)/bin/alreid bench configs/default.yaml

# The annotate page's browser test drives Debian's headless Chromium; installed here only when missing.
browser:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium chromium-driver; }

# ALREID_STRICT_SKIPS=1: a skip other than GPU/CUDA or data absent from ../shared fails the run (tests/conftest.py)
test: $(TEST_STAMP) browser
	ALREID_STRICT_SKIPS=1 $(PY) -m pytest -q

# Mutation testing of the core modules (not in CI; hours on two cores): `make mutants` or `make mutants MUTANTS='gbas lbas'`.
# Modules and their focused tests: tests/mutants/focus.toml; results: results/mutants/; each module's reviewed survivors:
# tests/mutants/<module>.md. Exit 1 names any surviving mutant no review explains. `make mutmut`: plain `mutmut run`.
MUTANTS ?=
mutants: $(TEST_STAMP)
	$(PIP) install --quiet -e '.[test,dev]'
	nice -n 10 $(PY) scripts/mutants_all.py $(MUTANTS)

mutmut: $(TEST_STAMP)
	$(PIP) install --quiet -e '.[test,dev]'
	nice -n 10 $(VENV)/bin/mutmut run
	$(VENV)/bin/mutmut results > results/mutmut-results.txt || true

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
