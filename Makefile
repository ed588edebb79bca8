# The two commands: `make repro` (set up + run the experiment), `make test` (set up + lint + tests).
SHELL := /bin/bash
VENV := .venv
PYTHON ?= python3.11
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup system-packages repro test test-kernels test-timings lint docs format bench

$(VENV)/.installed: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	$(VENV)/bin/pip check
	touch $@

setup: $(VENV)/.installed

repro: setup
	dvc repro

lint: setup
	ruff check .
	ruff format --check .

docs: setup
	NO_MKDOCS_2_WARNING=1 mkdocs build --strict --quiet

format: setup
	ruff check --fix .
	ruff format .

system-packages:
	bash tools/install-system-packages.sh

test: lint docs system-packages
	pytest -q --durations=25

# The kernel tier: the fold convolution's forms, the stacked models (each fold = its ordinary
# model, trained) and one end-to-end run again under the CPU kernel set TensorFlow does not pick
# by default here (oneDNN on an AVX2 CPU, Eigen on AVX-512).
KERNEL_TESTS := tests/test_fold_conv.py tests/test_stacked.py tests/test_stacked_rcn.py \
	tests/test_end_to_end.py::test_repro_registers_a_champion_and_predict_uses_it
test-kernels: setup system-packages
	TF_ENABLE_ONEDNN_OPTS=$$(env -u TF_ENABLE_ONEDNN_OPTS python tools/other_kernels.py 2>/dev/null) && \
	echo "kernel tier: TF_ENABLE_ONEDNN_OPTS=$$TF_ENABLE_ONEDNN_OPTS" && \
	TF_ENABLE_ONEDNN_OPTS=$$TF_ENABLE_ONEDNN_OPTS pytest -q --durations=10 $(KERNEL_TESTS)

# The suite's wall time per test module, into benchmarks/RESULTS.md ("test timings").
test-timings: setup system-packages
	mkdir -p .mer
	pytest -q --junitxml=.mer/junit.xml || true
	python -m benchmarks.test_timings .mer/junit.xml

bench: setup
	python -m benchmarks
