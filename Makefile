# Every target sets up .venv first: pinned torch/torchvision from the local wheel cache, then nbkit.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
NOTEBOOK ?= models
RUNS ?= $(if $(filter epochs,$(NOTEBOOK)),artifacts/runs-epochs,artifacts/runs)

.PHONY: run jupyter test chromium variants summary report benchmark clean-venv

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]' $(TORCH_PINS)
	touch $@

# The main job: the workbench on the shipped runs (NOTEBOOK=resnets|learning|models|epochs; epochs opens
# artifacts/runs-epochs).
run: $(VENV)/.installed
	$(VENV)/bin/marimo edit notebooks/$(NOTEBOOK).py -- --runs-dir $(abspath $(RUNS))

# The same comparisons as an ipywidgets panel in JupyterLab (installs the jupyter extra once):
#   from nbkit import Panel; Panel("models")
jupyter: $(VENV)/.installed
	$(PY) -c "import jupyterlab" 2>/dev/null || $(PY) -m pip install -q -e '.[jupyter]'
	NBKIT_RUNS_DIR=$(abspath $(RUNS)) $(VENV)/bin/jupyter lab $$([ "$$(id -u)" = 0 ] && echo --allow-root)

# The test suite; CI runs exactly this: the layers contract (pyproject.toml, [tool.importlinter]), then
# pytest. Browser tests need Debian's chromium (installed here as root).
test: $(VENV)/.installed chromium
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q --durations=25

chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null)); } || \
	  echo "chromium is not installed: the browser tests will be skipped"

variants: $(VENV)/.installed
	$(PY) -m nbkit variants

summary: $(VENV)/.installed
	$(PY) -m nbkit summary --runs-dir $(RUNS)

report: $(VENV)/.installed
	$(PY) -m nbkit report --runs-dir $(RUNS) --out artifacts/reports --figures docs/figures

benchmark: $(VENV)/.installed
	$(PY) benchmarks/speed.py

clean-venv:
	rm -rf $(VENV)
