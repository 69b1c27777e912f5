# Two commands for a fresh machine: `make` (set up, then run the main job) and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
SM := $(VENV)/bin/streammuse
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

# The main job: the offline baseline and a wall-clock replay (Local setting, embedded IPC
# server, I=2, GL=5, 120 BPM, first 8 songs cropped to 16 bars), then their Table III.
# Each `make` writes a new runs/main-<time>/; the full set: see the README.
run: setup
	@out=runs/main-$$(date +%Y%m%d-%H%M%S); \
	$(SM) replay testset/ --setting offline --out $$out && \
	$(SM) replay testset/ --setting local --bpm 120 --out $$out && \
	$(SM) report $$out

# Unit and integration tests, then the regression gate against gate/baseline.json.
test: setup
	$(PY) -m pytest -q
	$(SM) gate

clean:
	rm -rf $(VENV) .pytest_cache
