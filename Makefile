# Two commands a fresh machine needs: `make bench` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
export RAY_AUTH_MODE ?= disabled

.PHONY: bench test clean venv browser

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

test: $(TEST_STAMP) browser
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
