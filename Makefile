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

## Unit tests, then the five notebooks under nbval on the smoke profile (their parameters cells)
test: venv clean-smoke
	$(PY) -m pytest -p no:cacheprovider tests $(NOTEBOOKS) --nbval-lax --nbval-current-env

## Speed figures (writes BENCHMARKS.md rows)
bench: venv
	$(VENV)/bin/advlib bench all

lab: venv
	$(VENV)/bin/jupyter lab notebooks

clean-smoke:
	rm -rf data/smoke tables/smoke figures/smoke build/smoke data/smoke-* tables/smoke-* figures/smoke-* build/smoke-*
