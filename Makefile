# The README's two commands are `make demo` and `make test`.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.bootstrapped
TESTSTAMP := $(VENV)/.bootstrapped-test

.PHONY: demo test bench lint format clean

$(STAMP): pyproject.toml scripts/bootstrap.sh
	scripts/bootstrap.sh
	@touch $@

demo: $(STAMP)
	$(PY) -m updraft.demo $(DEMO_ARGS)

$(TESTSTAMP): $(STAMP) scripts/bootstrap.sh
	scripts/bootstrap.sh --test
	@touch $@

test: $(TESTSTAMP)
	$(PY) -m pytest $(TEST_ARGS)

bench: $(STAMP)
	$(PY) -m bench $(BENCH_ARGS)

lint: $(TESTSTAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m pilot.build --list | xargs $(VENV)/bin/vermin -q -t=3.9- --violations --no-tips  # the pilot bundle runs on Python 3.9

format: $(TESTSTAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache *.egg-info
