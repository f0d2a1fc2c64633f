# Two commands on a fresh machine: `make run` (the main job) and `make test`.
# Each builds the virtual environment on first use; torch's CPU build is installed
# before the project so that the open `torch>=2.2` range does not pull a CUDA build.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: run demo test test-slow bench venv clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[all,bench,dev]'
	touch $(STAMP)

venv: $(STAMP)

# The main job: the quickstart training on this machine (Ray started locally, a few
# minutes on two cores), then an evaluation of the trained driver against the reference lap.
run: $(STAMP)
	@out=runs/quickstart-$$(date +%Y%m%d-%H%M%S); \
	$(VENV)/bin/racing train --config configs/quickstart.yaml --out $$out && \
	$(VENV)/bin/racing eval --driver $$out --track club --laps 2 --json $$out/final_eval.json && \
	echo "TensorBoard logs: $$out/tb   (view them: $(VENV)/bin/tensorboard --logdir $$out/tb)"

demo: $(STAMP)
	$(VENV)/bin/racing demo

test: $(STAMP)
	$(PY) -m pytest -m "not slow" -q

test-slow: $(STAMP)
	$(PY) -m pytest -m slow -q

bench: $(STAMP)
	$(VENV)/bin/racing bench

clean:
	rm -rf $(VENV) build *.egg-info
