# The two commands of the README: `make demo` and `make test`. Everything else builds on `venv`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell $(PYTHON) -c 'import hashlib,sys;print(hashlib.sha1(open("pyproject.toml","rb").read()).hexdigest()[:12])')

.PHONY: venv demo test lint services check-all bench serve sandbox clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

venv: $(STAMP)

demo: venv                ## gateway on :8080 in front of the sandbox upstream on :8081
	$(BIN)/mcp-gateway demo

serve: venv               ## the gateway alone, upstream URLs from RETENTLY_API_URL / REFINER_API_URL
	$(BIN)/mcp-gateway serve

sandbox: venv             ## the sandbox upstream alone
	$(BIN)/mcp-gateway sandbox

test: venv lint services  ## the whole suite (bounded versions of the slow checks)
	$(BIN)/pytest -q -m "not slow"

services:                 ## redis-server for the cross-replica tests (Debian package; needs root)
	@command -v redis-server >/dev/null 2>&1 || { \
	  (apt-get install -y -qq redis-server || (apt-get update -qq && apt-get install -y -qq redis-server)) \
	    >/dev/null 2>&1 || echo "note: redis-server could not be installed; the Redis tests will report a skip"; }

lint: venv
	$(BIN)/ruff check gateway tests fixtures
	$(BIN)/mypy
	$(BIN)/mcp-gateway check

check-all: venv lint services  ## everything, the slow external checks included
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache
