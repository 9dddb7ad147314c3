# Two commands for a new user: `make demo` and `make test` (see README.md).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test bench gpu-check gpu-wheels gpu-check-dry lint typecheck install install-test \
	system-test-deps clean-demo

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(PY) -m pip install -e '.[test]'
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

## make demo: SQLite + embedded Celery broker + local storage; prints the URL and accounts.
demo: install
	$(PY) -m backend.demo

## Browser tests drive Debian's Chromium; the compose test uses Debian's docker-compose (v1).
system-test-deps:
	@if [ ! -x /usr/bin/chromium ] || ! command -v docker-compose >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium docker-compose >/dev/null; \
	  else echo "install chromium and docker-compose (apt-get install chromium docker-compose)"; exit 1; fi; \
	fi

## make test: the whole suite; integration tests use TEST_DATABASE_URL and TEST_REDIS_URL.
## Whole test files are spread over TEST_PROCS processes (pytest-xdist), the longest first
## (LONGEST_FIRST in tests/conftest.py); each process has its own database, queue and storage
## folder. Beside that main pass run two pytest sessions of their own (their own databases and
## queues), each report printed after the main one: the suites that store files, again with
## every file in a real S3 server (SeaweedFS, started by the tests: TEST_STORAGE=s3) over
## S3_PROCS processes, and the API fuzzing (FUZZ_SUITE: collecting it builds a test per
## operation, seconds that every main-pass process would pay for the one that runs it). The
## tests marked serial (they time requests under a load they make) then run alone, only their
## files collected. TEST_PROCS=0 runs the main pass in one process. The project's bytecode is
## compiled once first and kept (PYTHONDONTWRITEBYTECODE, set on some machines, is lifted for
## the suite): each of its hundred-odd Python processes would compile it again, and pytest
## would rewrite every test module's asserts again in each session.
TEST_PROCS ?= 4
S3_PROCS ?= 2
S3_SUITES = tests/backend/test_datasets.py tests/backend/test_annotation.py \
	tests/backend/test_runs_api.py tests/backend/test_study_stimuli.py \
	tests/worker/test_training_tasks.py
FUZZ_SUITE = tests/backend/test_api_fuzz.py
SERIAL_SUITES = $(shell grep -rlE --include='test_*.py' 'mark\.serial' tests)
test: install-test system-test-deps
	@unset PYTHONDONTWRITEBYTECODE; $(PY) -m compileall -q -j 2 backend worker runconfig tests; \
	s3_log=$$(mktemp); fuzz_log=$$(mktemp); \
	TEST_STORAGE=s3 $(PY) -m pytest -ra -n $(S3_PROCS) --dist loadfile --no-loadscope-reorder \
	  $(S3_SUITES) >$$s3_log 2>&1 & s3=$$!; \
	$(PY) -m pytest -ra $(FUZZ_SUITE) $(PYTEST_ARGS) >$$fuzz_log 2>&1 & fuzz=$$!; \
	$(PY) -m pytest -ra -n $(TEST_PROCS) --dist loadfile --no-loadscope-reorder -m "not serial" \
	  --ignore=$(FUZZ_SUITE) $(PYTEST_ARGS); main=$$?; \
	wait $$s3; s3_rc=$$?; echo "== the S3 pass (TEST_STORAGE=s3: $(S3_SUITES))"; \
	cat $$s3_log; rm -f $$s3_log; \
	wait $$fuzz; fuzz_rc=$$?; echo "== the API fuzzing ($(FUZZ_SUITE))"; \
	cat $$fuzz_log; rm -f $$fuzz_log; [ $$fuzz_rc = 5 ] && fuzz_rc=0; \
	[ $$main = 0 ] && [ $$s3_rc = 0 ] && [ $$fuzz_rc = 0 ] || exit 1; \
	$(PY) -m pytest -ra -m serial $(SERIAL_SUITES) $(PYTEST_ARGS)

## make bench: throughput of every training method (and, with CUDA, the GPU lines), the
## evaluation attacks, the stream loader against PGD-AT at 224 px, concurrent mask saves, and
## the web side at lab scale on PostgreSQL (200,000 images, 100,000 masks, 3,000 runs), a study's
## results page at 50 x 200 answers, the study design simulation (coverage, QUEST+), and the
## annotators' assisted tools against the brush in Chromium (pointer actions, wand preview).
bench: install-test system-test-deps
	$(PY) -m worker.sipat.bench
	$(PY) -m worker.sipat.bench_eval
	$(PY) -m worker.sipat.bench_loader
	$(PY) -m backend.benchmarks.mask_save
	$(PY) -m backend.benchmarks.scale
	$(PY) -m backend.benchmarks.sweep_page
	$(PY) -m backend.benchmarks.annotation_tools
	$(PY) -m backend.benchmarks.study_results
	$(PY) -m backend.benchmarks.study_design

## make gpu-check: the CUDA-only tests and the GPU benchmark, in one command (one GPU, < 8 min),
## with this venv's packages. On a lent machine with no network: scripts/gpu_check.sh (README).
gpu-check: install-test
	PY=$(PY) WHEELS= scripts/gpu_check.sh

## make gpu-wheels: what a lent GPU machine (no network, its own python3 3.12 with torch 2.11)
## lacks, as CPython 3.12 manylinux wheels in gpu-wheels/ (scripts/gpu-wheels.txt; 38.5 MiB).
## There: scripts/gpu_check.sh installs them with pip --no-index into a folder of its own.
gpu-wheels: gpu-wheels/.done
gpu-wheels/.done: scripts/gpu-wheels.txt scripts/gpu_wheels.py
	$(PYTHON) scripts/gpu_wheels.py --out gpu-wheels
	touch $@

## make gpu-check-dry: that path without a GPU (CI runs it after make test): a venv of
## CPython 3.12 with only the lent machine's torch 2.11 and torchvision 0.26 (kept in the
## ignored .gpu-dry/, built once: 3.6 GB, about 2 minutes), the wheels installed as there,
## then scripts/gpu_check.sh --dry: every import, the API check, the CPU smoke, the CUDA
## tests collected and their CPU half run, up to "no CUDA GPU".
GPU_DRY_VENV ?= .gpu-dry/venv
gpu-check-dry: gpu-wheels
	scripts/gpu_dry_venv.sh $(GPU_DRY_VENV)
	PY=$(GPU_DRY_VENV)/bin/python scripts/gpu_check.sh --dry .gpu-dry/out

lint: install-test
	$(VENV)/bin/ruff check backend worker runconfig tests migrations

typecheck: install-test
	$(VENV)/bin/mypy backend runconfig

clean-demo:
	rm -rf var
