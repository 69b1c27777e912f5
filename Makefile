# Two commands for a fresh machine: `make` (set up, then run the main job) and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
SM := $(VENV)/bin/streammuse
STAMP := $(VENV)/.installed

.PHONY: all setup run test test-browser test-image bench clean

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

# The jam page in a real headless Chromium (tests/browser): plays a scripted melody at
# 120 BPM through the page against the embedded server and checks the take. Not part of
# `make test`: it installs Debian's chromium + chromium-driver (a 164 MB download, 505 MB on disk, as root), and
# it plays in real time, so its timings depend on how busy the machine is. Run it before
# every change to the page (streammuse/serving/jam_page/); it rewrites docs/img/jam.png.
test-browser: setup
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; }
	$(PY) -m pip install -q -e '.[test,browser]'
	$(PY) -m pytest -q -s tests/browser

# The CPU image, built from the Dockerfile and checked from outside (tests/image): /healthz,
# /v1/model, a song replayed through it, uid 1000, the package's checkpoint, `docker stop`
# within its grace period, the size; figures into runs/test-image-<time>.json. Not part of
# `make test`: as root it installs Debian's docker.io and debootstrap (about 100 MB), starts
# dockerd if none answers, and builds for minutes. What this machine needed that a user's
# would not (docs/deploy.md, "The image, built here"): dockerd without a bridge or iptables
# (vfs storage; containers on the host network), a stand-in for rayproject/ray made with
# debootstrap (Docker Hub is out of reach: image/standin-base.sh), the host's CA bundle for
# pip inside the build, and the local torch 2.13.0 CPU wheel (image/wheels/, not on the CPU index).
# DOCKER: Debian's client, whose BuildKit needs no buildx plugin (/usr/local/bin/docker here does).
DOCKER ?= $(shell test -x /usr/bin/docker && echo /usr/bin/docker || echo docker)
test-image: setup
	@command -v dockerd >/dev/null && command -v debootstrap >/dev/null || \
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io debootstrap; }
	@$(DOCKER) info >/dev/null 2>&1 || { mkdir -p build; echo "starting dockerd (log: build/dockerd.log)"; \
		nohup dockerd --storage-driver vfs --iptables=false --bridge=none >build/dockerd.log 2>&1 & \
		for i in $$(seq 60); do $(DOCKER) info >/dev/null 2>&1 && break; sleep 1; done; }
	DOCKER=$(DOCKER) $(PY) -m pytest -q -s -p no:warnings tests/image

clean:
	rm -rf $(VENV) .pytest_cache
