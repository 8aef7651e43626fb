# The two commands of the README: `make demo` and `make test`. Everything else builds on `venv`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell $(PYTHON) -c 'import hashlib,sys;print(hashlib.sha1(open("pyproject.toml","rb").read()).hexdigest()[:12])')

.PHONY: venv demo test lint services node conformance inspect check-all bench serve sandbox clean

# Node 22 and the MCP project's own tools (conformance suites, Inspector, TypeScript SDK), plus
# the OpenAPI example documents import-openapi is tested on, from the npm registry into .node/
# only: nothing global, nothing downloaded from anywhere else.
NODE_DIR  := .node
NODE_BIN  := $(NODE_DIR)/node_modules/.bin
NODE_PKGS := node@22 \
	conformance-0.1@npm:@modelcontextprotocol/conformance@0.1.16 \
	conformance-0.2@npm:@modelcontextprotocol/conformance@0.2.0-alpha.12 \
	@modelcontextprotocol/inspector@2.12.0 \
	@modelcontextprotocol/sdk@1.32.2 \
	@readme/oas-examples@8.2.2

$(STAMP): pyproject.toml setup.py gateway/native/_rows.c gateway/native/_pages.c gateway/native/_json.h
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

# Three test processes on two cores: much of the suite waits on the servers and commands it
# starts; each module stays in one process, so its fixtures are built once.
test: venv lint services node-if-possible  ## the whole suite (bounded versions of the slow checks)
	$(BIN)/pytest -q -m "not slow" -n 3 --dist loadscope --cov --cov-report=term

node-if-possible:         # tests that need Node say they were skipped when it cannot be installed
	@$(MAKE) --no-print-directory node || echo "note: Node 22 could not be installed from the npm registry; the Node-based tests will report a skip"

services:                 ## redis-server and haproxy for the cross-replica tests (Debian packages; need root)
	@command -v redis-server >/dev/null 2>&1 || { \
	  (apt-get install -y -qq redis-server || (apt-get update -qq && apt-get install -y -qq redis-server)) \
	    >/dev/null 2>&1 || echo "note: redis-server could not be installed; the Redis tests will report a skip"; }
	@command -v haproxy >/dev/null 2>&1 || { \
	  (apt-get install -y -qq haproxy || (apt-get update -qq && apt-get install -y -qq haproxy)) \
	    >/dev/null 2>&1 || echo "note: haproxy could not be installed; the multi-replica tests will report a skip"; }

lint: venv
	$(BIN)/ruff check gateway sandbox tests fixtures conformance bench
	$(BIN)/mypy
	$(BIN)/mcp-gateway check

$(NODE_DIR)/.installed: Makefile
	@mkdir -p $(NODE_DIR)
	@test -f $(NODE_DIR)/package.json || echo '{"name":"mcp-gateway-node-tools","private":true}' > $(NODE_DIR)/package.json
	cd $(NODE_DIR) && npm install --no-audit --no-fund --loglevel=error $(NODE_PKGS)
	@$(NODE_BIN)/node --version
	@touch $@

node: $(NODE_DIR)/.installed  ## Node 22 + conformance suites + Inspector + TypeScript SDK + OpenAPI examples, project-local

bench: venv               ## gateway vs bare proxy (vs FastMCP if installable) -> bench/results/
	@test -x build/peer-venv/bin/python || { python3 -m venv build/peer-venv && \
	  build/peer-venv/bin/pip install --quiet fastmcp==4.1.0 uvicorn; } || \
	  echo "note: FastMCP could not be installed; the peer column stays empty"
	$(BIN)/python -m bench.run

conformance: venv node    ## every scenario of both conformance suites -> build/conformance/report.md
	$(BIN)/python conformance/run.py

inspect: venv node        ## the MCP Inspector CLI lists and calls a tool of each service, both eras
	$(BIN)/python conformance/inspect.py

check-all: venv lint services node  ## everything, the slow external checks included
	@# podman, runc and debootstrap build and run the image (tests/server/test_image.py)
	@command -v podman >/dev/null 2>&1 && command -v runc >/dev/null 2>&1 && \
	  command -v debootstrap >/dev/null 2>&1 || { \
	  (apt-get install -y -qq podman runc debootstrap || (apt-get update -qq && \
	    apt-get install -y -qq podman runc debootstrap)) >/dev/null 2>&1 || \
	  echo "note: podman, runc or debootstrap could not be installed; the image tests will report a skip"; }
	HYPOTHESIS_PROFILE=thorough $(BIN)/pytest -q

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache
