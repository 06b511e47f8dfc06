# Two commands: `make dev` (serve the seeded worker on http://127.0.0.1:8787) and `make test`.
# Everything else is set up on demand: .venv (Python 3.11+), node_modules (npm ci), the seed, .dev.vars.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8787
SEED_SOURCES := kv-seed/seed.toml $(wildcard src/personalizer_adapters/*.py) src/personalizer/codec.py src/personalizer/keys.py

.PHONY: dev test bench lint seed bundle install clean
.DEFAULT_GOAL := dev

install: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[origin,dev]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

.dev.vars:
	@echo "creating .dev.vars with a fresh local signing key (git-ignored)"
	@printf 'PZ_SIGNING_KEYS=%s\n' "$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(32))')" > $@

kv-seed/out/kv.json: $(SEED_SOURCES) $(VENV)/.installed
	$(VENV)/bin/personalizer seed

# Local KV (.wrangler/state, the place `wrangler kv ... --local` uses), reloaded when the seed changes.
.wrangler/state/.seeded: kv-seed/out/kv.json node_modules/.installed
	node tests/runtime/kvseed.mjs kv-seed/out/kv.json --persist .wrangler/state
	touch $@

seed: .wrangler/state/.seeded

dev: install .dev.vars seed
	@echo "a signed-in shopper: curl -H \"Cookie: pz_uid=$$($(VENV)/bin/personalizer sign-user c00001)\" 'http://127.0.0.1:$(PORT)/v1/page?slots=hero,home,recent'"
	node tests/runtime/edge.mjs --port $(PORT) --persist .wrangler/state

test: lint
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check src worker tests
	$(VENV)/bin/mypy

bench: install kv-seed/out/kv.json
	$(PY) tests/bench/bench.py

bundle: install
	npx wrangler deploy --dry-run --outdir dist/bundle

clean:
	rm -rf .wrangler kv-seed/out worker/personalizer dist
