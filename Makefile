# The two commands: `make repro` (set up + run the experiment), `make test` (set up + lint + tests).
SHELL := /bin/bash
VENV := .venv
PYTHON ?= python3.11
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup system-packages repro test test-fast test-kernels test-timings test-mutations lint docs format bench

# uv resolves and installs the same packages as pip in a fraction of the time (20 s against 86 s
# here, before byte-compiling); compiled at install as pip does, not by the first processes that
# import them (the tests' own); pip installs them where uv cannot (no uv wheel, or no network to
# PyPI but pip's own indexes and wheel folders)
$(VENV)/.installed: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q uv && $(VENV)/bin/uv pip install -q --compile-bytecode --python $(VENV)/bin/python -e '.[dev]' \
		|| { $(VENV)/bin/pip install -q --upgrade pip && $(VENV)/bin/pip install -q -e '.[dev]'; }
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

# tests run in parallel, a test file per worker at a time (its module fixtures built once)
WORKERS ?= -n 3 --dist loadfile
test: lint docs system-packages
	pytest -q $(WORKERS) --durations=25

# The fast tier, for your own iteration: no services, clusters or real trainings of a stage.
test-fast: setup
	pytest -q $(WORKERS) -m "not slow"

# The kernel tier: the fold convolution's forms, the stacked models (each fold = its ordinary
# model, trained), training (resumed = uninterrupted included) and the units of work (one or
# several folds and seeds a unit) again under the CPU kernel set TensorFlow does not pick by
# default here (oneDNN on an AVX2 CPU, Eigen on AVX-512). `make test` reproduces every stage
# under both already (tests/test_flow_images.py's `dvc repro` runs under the other set). Not the
# units tests about Ray and interruptions (a killed worker retried, Ray = in-process, a resumed
# evaluation): they are about orchestration, and their training is the other units tests'.
KERNEL_TESTS := tests/test_fold_conv.py tests/test_stacked.py tests/test_stacked_rcn.py \
	tests/test_training.py tests/test_units.py \
	--deselect tests/test_units.py::test_units_spread_over_two_nodes_and_a_killed_worker_is_retried \
	--deselect tests/test_units.py::test_sequential_and_distributed_give_identical_predictions \
	-k "not test_an_interrupted_evaluation_resumes_with_the_missing_units_only"
test-kernels: setup system-packages
	TF_ENABLE_ONEDNN_OPTS=$$(env -u TF_ENABLE_ONEDNN_OPTS python tools/other_kernels.py 2>/dev/null) && \
	echo "kernel tier: TF_ENABLE_ONEDNN_OPTS=$$TF_ENABLE_ONEDNN_OPTS" && \
	TF_ENABLE_ONEDNN_OPTS=$$TF_ENABLE_ONEDNN_OPTS pytest -q $(WORKERS) --durations=10 $(KERNEL_TESTS)

# The suite's wall time per test module, into benchmarks/RESULTS.md ("test timings").
test-timings: setup system-packages
	mkdir -p .mer && rm -f .mer/cpu.jsonl
	python -m pytest -q $(WORKERS) -p tools.pytest_cpu --junitxml=.mer/junit.xml || true
	python -m benchmarks.test_timings .mer/junit.xml --cpu .mer/cpu.jsonl --workers "$(WORKERS)"

# Key invariants broken one line at a time: the tests that guard each must fail (tools/mutation_checks.py).
test-mutations: setup system-packages
	python tools/mutation_checks.py

bench: setup
	python -m benchmarks
