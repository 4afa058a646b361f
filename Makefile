# Every target sets up .venv first (pinned torch from the local wheel cache, then nbkit).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: test run variants clean-venv

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PINS)
	$(PY) -m pip install -q -e '.[dev]' $(TORCH_PINS)
	touch $@

test: $(VENV)/.installed
	$(PY) -m pytest -q

run: variants

variants: $(VENV)/.installed
	$(PY) -m nbkit variants

clean-venv:
	rm -rf $(VENV)
