# The two commands: `make repro` (set up + run the experiment), `make test` (set up + lint + tests).
SHELL := /bin/bash
VENV := .venv
PYTHON ?= python3.11
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup system-packages repro test lint docs format bench

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
	pytest -q

bench: setup
	python -m benchmarks
