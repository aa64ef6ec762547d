# etlctl: every target installs what it needs first, so each works on a fresh clone.
# Variables: N (workers), POOL, STATE (where the local server keeps its files), ETLCTL_CONFIG.

VENV    ?= .venv
PY      := $(VENV)/bin/python
ETLCTL  := $(VENV)/bin/etlctl
N       ?= 3
STATE   ?= .state
export ETLCTL_STATE_DIR ?= $(abspath $(STATE))

.PHONY: install demo test lint bench sample-config prefect-server prefect-setup deploy-flows start-workers \
        run-distributed run-flow status clean fleet-demo

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

demo: install            ## the whole job end to end on embedded defaults
	$(ETLCTL) demo

test: install            ## the test suite, against real Prefect, SQLite and worker processes
	$(VENV)/bin/pytest -q

lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

bench: install           ## benchmarks, as ratios against a baseline measured in the same run
	$(PY) -m bench

sample-config: install   ## ./etlctl.toml loading the demo's sample source (built in $(STATE)), unless one exists
	@if [ -e etlctl.toml ]; then echo "etlctl.toml exists: kept"; else \
	  mkdir -p $(ETLCTL_STATE_DIR) && \
	  $(PY) -c 'import sys; from flows.demo.sample import build_sample, write_sample_config; \
	    src, dst = (f"sqlite:///{sys.argv[1]}/{n}.db" for n in ("source", "warehouse")); \
	    print(len(build_sample(src)), "sample tables in", src); \
	    print("wrote", write_sample_config("etlctl.toml", src, dst))' $(ETLCTL_STATE_DIR); fi

prefect-server: install  ## a local Prefect server (SQLite) in $(STATE), in the foreground
	$(ETLCTL) server start --foreground

prefect-setup: install   ## work pools and concurrency limits
	$(ETLCTL) setup

deploy-flows: install    ## the four deployments
	$(ETLCTL) deploy

start-workers: install   ## N supervised `prefect worker start` processes, in the foreground
	$(ETLCTL) workers start -n $(N) $(if $(POOL),--pool $(POOL))

run-distributed: install ## the orchestrator: one flow run per table across the workers
	$(ETLCTL) run

run-flow: install        ## every table as a task in one flow run, limited by the `database` tag
	$(ETLCTL) run --single-flow

status: install
	$(ETLCTL) status

fleet-demo: install      ## hosts in network namespaces (root): a worker host dies mid-batch, nothing is lost
	$(PY) -m lab

clean:
	rm -rf $(STATE) build *.egg-info
