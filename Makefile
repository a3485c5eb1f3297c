# The two commands of the README: `make book` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV ?= .venv
PROFILE ?= cpu
PY := $(VENV)/bin/python
TIMED := scripts/timed.sh
SMOKE_DIR := $(shell mktemp -u -d /tmp/polcore-smoke.XXXXXX)

.PHONY: book test install unit dryrun smoke nbval html browser clean

$(VENV)/.installed: pyproject.toml requirements-lock.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements-lock.txt -e ".[dev]"
	touch $@

install: $(VENV)/.installed

book: install
	@$(TIMED) "make book (profile $(PROFILE))" $(PY) -m polcore book --profile $(PROFILE)

unit: install
	@$(TIMED) "unit tests" $(PY) -m pytest tests -q -m "not browser and not dryrun"

# Every unit of every experiment at the paper profile, cut to a handful of steps, on the CPU, on
# generated archives in the real CIFAR/MNIST formats (tests/test_dry_run.py; `polcore run all --dry-run`).
# Two pytest processes of one thread each (a core each), each with its own results directory: the
# experiments that read F-tab1's result, with the verifier and forging ones, in the first; Zhang,
# the primer and detection in the second (balanced by the 2026-11-24 run, whose processes took
# 196 s and 474 s with the verifier and forging experiments in the second). Each prints its four
# slowest experiments, to rebalance by.
DRY_GROUP := fang or verdict_matrix or verifier_attacks or suliman
DRY_TMP := $(shell mktemp -u -d /tmp/polcore-dry.XXXXXX)
dryrun: install
	@$(TIMED) "paper-profile dry run of every experiment (2 processes)" bash -c 'mkdir -p $(DRY_TMP); \
		$(PY) -m pytest tests -q -p no:cacheprovider -m dryrun -k "$(DRY_GROUP)" --basetemp=$(DRY_TMP)/a --durations=4 & a=$$!; \
		$(PY) -m pytest tests -q -p no:cacheprovider -m dryrun -k "not ($(DRY_GROUP))" --basetemp=$(DRY_TMP)/b --durations=4; b=$$?; \
		wait $$a; a=$$?; rm -rf $(DRY_TMP); exit $$((a | b))'

smoke: install
	@$(TIMED) "every notebook at the smoke profile" env POLCORE_RESULTS=$(SMOKE_DIR)/results \
		$(PY) -m polcore book --profile smoke --out $(SMOKE_DIR)/book --no-build
	@rm -rf $(SMOKE_DIR)

nbval: install
	@$(TIMED) "nbval over book/*.ipynb" $(PY) -m pytest -q -p no:cacheprovider --nbval book/*.ipynb \
		--nbval-sanitize-with tests/nbval_sanitize.cfg

html: install
	@$(TIMED) "jupyter-book build" $(VENV)/bin/jupyter-book build . -W -n --keep-going

# Every page of _build/html in headless Chromium at 1400 and 400 px (skips, saying so, without one).
browser: install
	@$(TIMED) "every page in a browser" $(PY) -m pytest tests/test_browser.py -q -m browser

test:
	@$(TIMED) "install" $(MAKE) --no-print-directory install
	@$(TIMED) "make test" $(MAKE) --no-print-directory unit dryrun smoke nbval html browser

clean:
	rm -rf _build
