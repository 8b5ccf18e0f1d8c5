# Two commands do everything: `make reproduce` (PROFILE=demo|paper|smoke) and `make test`.
PROFILE ?= demo
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
NOTEBOOKS := notebooks/01_dataset.ipynb notebooks/02_operation_effects.ipynb \
             notebooks/03_detection.ipynb notebooks/04_correction.ipynb notebooks/05_adaptive.ipynb
export MPLBACKEND := Agg
export PYTHONHASHSEED := 0

.PHONY: reproduce test venv bench lab clean-smoke check-profile

$(VENV)/.installed: pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -c constraints.txt -e ".[notebooks,cluster,test]"
	@touch $@

venv: $(VENV)/.installed

## Run the five notebooks with papermill on params/$(PROFILE).yaml -> tables/, figures/, build/
reproduce: venv
	$(VENV)/bin/advlib reproduce $(PROFILE)

## Validate params/$(PROFILE).yaml (or PROFILE=path.yaml) and print its parameters
check-profile: venv
	$(VENV)/bin/advlib check-profile $(PROFILE)

# Another CPU kind for the numerically sensitive tests: every library capped at AVX2, one thread.
OTHER_CPU := ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 \
             OPENBLAS_CORETYPE=Haswell OMP_NUM_THREADS=1

## The import layers, unit tests, the five notebooks under nbval on the smoke profile (their
## parameters cells), then the `numerics` tests again as on another CPU
test: venv clean-smoke
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -p no:cacheprovider --durations=15 tests $(NOTEBOOKS) --nbval-lax --nbval-current-env
	$(OTHER_CPU) $(PY) -m pytest -p no:cacheprovider -m numerics tests

## Speed figures (writes BENCHMARKS.md rows)
bench: venv
	$(VENV)/bin/advlib bench all

lab: venv
	$(VENV)/bin/jupyter lab notebooks

clean-smoke:
	rm -rf data/smoke tables/smoke figures/smoke build/smoke data/smoke-* tables/smoke-* figures/smoke-* build/smoke-*
