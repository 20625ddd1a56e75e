# distillax: `make train` and `make test` are all a fresh clone needs.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# A working Python >= 3.12: $(PYTHON) if given, else python3.12 on PATH, else pyenv's 3.12.x.
# (On these machines the pyenv shim `python3.12` exists but fails, so each candidate is run.)
PYTHON ?= $(shell for c in python3.12 $$(ls -d $$(pyenv root 2>/dev/null)/versions/3.12*/bin/python3.12 2>/dev/null) python3; do \
  $$c -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1 && { echo $$c; break; }; done)

# Each `make train` writes a new run directory (checkpoints, config, metrics) and points
# runs/latest at it; `make evaluate` turns runs/latest (or RUN=...) into a table and plots.
# Continue a run with `make train ARGS="--resume runs/<run>"` (RUN is then not used).
RUN_STAMP := runs/$(shell date +%Y%m%d-%H%M%S)
RUN ?= $(RUN_STAMP)

.PHONY: venv train evaluate test lint bench experiments clean

$(STAMP): pyproject.toml
	@if [ -z "$(PYTHON)" ]; then echo "error: no working Python >= 3.12 found (tried python3.12, pyenv's 3.12.x, python3); set PYTHON=/path/to/python3.12" >&2; exit 1; fi
	@echo "creating $(VENV) with $(PYTHON) ($$($(PYTHON) --version))"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,brax,wandb,playground]'
	@touch $(STAMP)

venv: $(STAMP)

train: $(STAMP)
	@case "$(ARGS)" in *--resume*) $(PY) -m distillax.train $(ARGS);; \
	  *) $(PY) -m distillax.train --checkpoint-dir $(RUN) $(ARGS) && \
	     mkdir -p runs && ln -sfn $(abspath $(RUN)) runs/latest && \
	     echo "run saved in $(RUN) (runs/latest); evaluate it with: make evaluate";; esac

evaluate: $(STAMP)
	$(PY) -m distillax.evaluate $(if $(filter $(RUN_STAMP),$(RUN)),runs/latest,$(RUN)) $(ARGS)

# --dist loadfile: a module runs on one worker, so its module-scoped fixtures (trained
# checkpoints, compiled MJX programs) are built once, not once per worker
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=15 tests $(ARGS)

# ruff (configured in pyproject.toml): style, import order, likely bugs
lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks experiments

# The peer of the benchmark (rejax PPO) goes into the venv for the bench only: it is not a
# dependency of distillax. Pinned: benchmarks/run.py adapts gymnax 1.0's step to its API.
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -q 'rejax==0.1.3'
	@touch $(BENCH_STAMP)

# Side-by-side speed (limit, rejax peer, distillation overhead, scaling in P, profile):
# writes benchmarks/results.json and benchmarks/results.md; ~20-25 min on 2 cores (the memory section alone took 9 min under load).
bench: $(BENCH_STAMP)
	$(PY) benchmarks/run.py $(ARGS)

# Every method on every experiment task, 5 seeds each: experiments/results/<task>.{md,json,png}
# (experiments/results/README.md collects them; double_pendulum_physics needs the brax extra,
# which `make` installs), the teachers against one context-aware policy from those curves
# (dividing.{md,png}), then the alpha / lambda sweeps (sensitivity.{md,json,png}); the README
# there gives the times.
EXPERIMENTS := cartpole pendulum pointgoal fourrooms double_pendulum_physics dividing sensitivity
# ... and cartpole's divided methods against one context-aware policy at a 200k budget
# (experiments/results/budget-200k, with its own dividing.md; experiments/results/README.md)
experiments: $(STAMP)
	@start=$$(date +%s); for t in $(EXPERIMENTS); do s=$$(date +%s); \
	    $(PY) experiments/$$t.py $(ARGS) || exit 1; echo "$$t took $$(( $$(date +%s) - s )) s"; done; \
	  s=$$(date +%s); \
	  $(PY) experiments/cartpole.py --total-steps 200000 --methods ppo-context,independent,central,dnc \
	    --out experiments/results/budget-200k $(ARGS) || exit 1; \
	  $(PY) experiments/dividing.py cartpole --out experiments/results/budget-200k || exit 1; \
	  echo "budget-200k took $$(( $$(date +%s) - s )) s"; \
	  echo "experiments took $$(( $$(date +%s) - start )) s"

clean:
	rm -rf $(VENV) runs
