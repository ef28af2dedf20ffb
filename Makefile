# minibert: every target sets up .venv/ itself (only when missing or when dependencies changed).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV_PY := .venv/bin/python
# The notebooks nbval runs, in book.toml order.
NOTEBOOKS = $(shell $(VENV_PY) -m minibert chapters)

.PHONY: setup test lab book sync check clean

setup:
	@$(PYTHON) scripts/setup_env.py

test: setup
	@$(VENV_PY) -m minibert check
	$(VENV_PY) -m pytest tests $(NOTEBOOKS) --nbval --nbval-current-env \
		--nbval-sanitize-with tests/nbval_sanitize.cfg $(PYTEST_ARGS)

lab: setup
	$(VENV_PY) -m jupyter lab notebooks/

book: setup
	$(VENV_PY) -m minibert book

sync: setup
	$(VENV_PY) -m minibert sync

check: setup
	$(VENV_PY) -m minibert check

clean:
	rm -rf _build .pytest_cache
