# Fresh-machine entry points.  `make demo` and `make test` both install what they need into .venv.
# On a GPU machine pick the CUDA build of torch you want, e.g. `make install TORCH=torch==2.13.0`
# after configuring pip for your CUDA index; the default is the CPU build available on CPU machines.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
OUT ?= demo_out

.PHONY: install test demo clean

# --no-compile: byte-compiling the ~100 packages s3prl pulls in was two thirds of the install time (about 70 of 100 s
# on the 2-core machine); Python compiles the modules a run imports when it first imports them.
$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet --no-compile "$(TORCH)" -e '.[synth,s3prl,finetune,dev]'
	touch $@

install: $(VENV)/.installed

# the layers (setup.cfg [importlinter]) and the lint rules (pyproject.toml [tool.ruff]) first, then the tests
test: install
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q

demo: install
	$(PY) -m experiments.demo --out $(OUT)

clean:
	rm -rf $(VENV) $(OUT)
