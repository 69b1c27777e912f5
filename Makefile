# Two commands for a fresh machine: `make` (set up, then run the main job) and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: all setup run test bench clean

all: run

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch==2.13.0 is pinned in pyproject.toml: here it resolves to the local CPU wheel.
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(VENV)/bin/streammuse datasets info testset/

test: setup
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache
