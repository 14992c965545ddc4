# Fresh-machine entry points.  `make demo` and `make test` both install what they need into .venv.
# On a GPU machine pick the CUDA build of torch you want, e.g. `make install TORCH=torch==2.13.0`
# after configuring pip for your CUDA index; the default is the CPU build available on CPU machines.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
OUT ?= demo_out

.PHONY: install test demo clean

# pip byte-compiles every package it installs on one core, and s3prl pulls in about 100 (most of the install time on
# a 2-core machine); instead the install compiles them afterwards on all cores, leaving out the packages' own test
# suites. A few files that only newer Pythons can compile (torch ships some) fail there as they do silently under pip:
# nothing imports them, so the step does not check what compile_dir returns.
$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet --no-compile "$(TORCH)" -e '.[synth,s3prl,finetune,dev]'
	$(PY) -c "import compileall, re; compileall.compile_dir('$(VENV)/lib', quiet=2, workers=0, rx=re.compile('/tests?/'))"
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
