# Two commands: `make dev` (serve the seeded worker on http://127.0.0.1:8787) and `make test`.
# Everything else is set up on demand: .venv (Python 3.11+), node_modules (npm ci), the seed, .dev.vars.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The ports, in one place: `make dev PORT=8790 ORIGIN_PORT=8791 SHOP_PORT=8792` (each is told of the others).
PORT ?= 8787
ORIGIN_PORT ?= 8788
SHOP_PORT ?= 8789
SEED_SOURCES := kv-seed/seed.toml kv-seed/campaigns.toml $(wildcard src/personalizer_adapters/*.py src/personalizer_adapters/*/*.py) $(wildcard src/personalizer/*.py)

.PHONY: dev test bench lint seed assets postgres-server java bundle lambda install clean fuzz
.DEFAULT_GOAL := dev

install: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[origin,serve,batch,spark,eval,report,dev]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

.dev.vars:
	@echo "creating .dev.vars with fresh local secrets (git-ignored)"
	@printf 'PZ_SIGNING_KEYS=%s\nORIGIN_SECRET=%s\nPZ_ID_KEY=%s\n' \
		"$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(32))')" \
		"$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(32))')" \
		"$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(32))')" > $@

kv-seed/out/kv.json: $(SEED_SOURCES) $(VENV)/.installed
	$(VENV)/bin/personalizer seed

# Local KV (.wrangler/state, the place `wrangler kv ... --local` uses), reloaded when the seed changes, but
# never over a build pushed there with `personalizer push --target local`: `make seed` goes back to the demo.
.wrangler/state/.seeded: kv-seed/out/kv.json node_modules/.installed
	node tests/runtime/kvseed.mjs kv-seed/out/kv.json --persist .wrangler/state --keep-pushed
	touch $@

# The demo shop again: regenerate the seed and reload it into local KV, over whatever was pushed there.
seed: install
	$(VENV)/bin/personalizer seed
	node tests/runtime/kvseed.mjs kv-seed/out/kv.json --persist .wrangler/state
	touch .wrangler/state/.seeded

# The browser snippet and its stylesheet (web/) minified into src/personalizer/assets.py (committed).
assets: node_modules/.installed
	$(PYTHON) web/build.py

# DATABASE_URL=postgresql://...: the origin's store in that PostgreSQL database (schema upgraded, the demo seeded
# into it), not in SQLite files.
DATABASE_URL ?=

# DATA=build/mine: serve your own build (pushed with `personalizer push --build build/mine --target local`)
# with its own origin data and event log (build/mine/origin) and its catalog in the demo shop; the demo is not
# seeded. STATE: the local KV directory (default .wrangler/state, where `--target local` pushes).
DATA ?=
STATE ?= .wrangler/state

# The origin (127.0.0.1:$(ORIGIN_PORT)) and the demo shop (127.0.0.1:$(SHOP_PORT)) run beside the edge and stop
# with it. The shop is another origin (ALLOWED_ORIGINS) and the worker's PAGES_ORIGIN (edge-side injection).
dev: install .dev.vars $(if $(DATA),,.wrangler/state/.seeded)
	@if [ -n "$(DATA)" ]; then \
		test -f "$(DATA)/origin/model.json" || { echo "error: $(DATA) is not a build (no origin/model.json): run personalizer build --out $(DATA), then push it --target local"; exit 2; }; \
		echo "your build $(DATA), generation $$(cat $(DATA)/generation.txt): a signed-in shopper: curl -H \"Cookie: pz_uid=\$$($(VENV)/bin/personalizer sign-user ID)\" 'http://127.0.0.1:$(PORT)/v1/page?slots=hero,home,recent'"; \
		echo "its profiles after beacons: personalizer refresh --data $(DATA)/origin --target local; experiments: personalizer report --data $(DATA)/origin"; \
	else \
		echo "a signed-in shopper: curl -H \"Cookie: pz_uid=$$($(VENV)/bin/personalizer sign-user c00001)\" 'http://127.0.0.1:$(PORT)/v1/page?slots=hero,home,recent'"; \
		echo "one only the origin knows (a miss, then a KV hit): pz_uid=$$($(VENV)/bin/personalizer sign-user c05001)"; \
		echo "a campaign before it goes live (an hour): $$(SHOP_PORT=$(SHOP_PORT) $(VENV)/bin/personalizer preview-link --campaign loyalty-gold 2>/dev/null)"; \
	fi
	@echo "the demo shop (pz.js, cross-origin): http://127.0.0.1:$(SHOP_PORT)/  through the worker (injection): http://127.0.0.1:$(PORT)/injected"
	@if [ -n "$(DATABASE_URL)" ]; then \
		$(VENV)/bin/personalizer db upgrade --database "$(DATABASE_URL)" && \
		$(if $(DATA),true,$(VENV)/bin/personalizer seed --database "$(DATABASE_URL)") || exit 2; fi
	@$(VENV)/bin/personalizer origin --port $(ORIGIN_PORT) $(if $(DATA),--data "$(DATA)/origin") $(if $(DATABASE_URL),--database "$(DATABASE_URL)") & origin=$$!; \
		$(VENV)/bin/personalizer shop --port $(SHOP_PORT) --edge http://127.0.0.1:$(PORT) $(if $(DATA),--inputs "$(DATA)/inputs") & shop=$$!; \
		trap "kill $$origin $$shop 2>/dev/null" EXIT; \
		sleep 2; kill -0 $$origin 2>/dev/null && kill -0 $$shop 2>/dev/null || exit 2; \
		node tests/runtime/edge.mjs --port $(PORT) --persist $(STATE) \
			--var ORIGIN_URL=http://127.0.0.1:$(ORIGIN_PORT) \
			--var ALLOWED_ORIGINS=http://127.0.0.1:$(SHOP_PORT),http://localhost:$(SHOP_PORT) \
			--var PAGES_ORIGIN=http://127.0.0.1:$(SHOP_PORT)

# The browser tests use Debian's Chromium (a browser download at test time is not possible everywhere).
CHROMIUM ?= /usr/bin/chromium
$(CHROMIUM):
	@echo "installing Debian's chromium for the browser tests (or set CHROMIUM=/path/to/chromium)"
	@if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else echo "error: the browser tests need Chromium: apt-get install chromium, or set CHROMIUM" >&2; exit 2; fi

# Test files run in parallel (pytest-xdist; a file's tests stay together, so a module's edge runtime is started
# once), one worker per core and one more for the time tests spend waiting on queues, browsers and subprocesses
# (2 cores: 3 workers finish in ~108 s, 2 in ~112 s): `make test TEST_WORKERS=1` runs them one after another.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || sysctl -n hw.ncpu 2>/dev/null || echo 1); echo $$((n + 1)))
# The store's tests start their own PostgreSQL server (Debian's postgresql) in a temporary directory.
postgres-server:
	@ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || { \
		echo "installing Debian's postgresql for the store tests"; \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; \
		elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; \
		else echo "error: the store tests need PostgreSQL: apt-get install postgresql" >&2; exit 2; fi; }

# The Spark engine's tests run Spark in local mode, which needs Java 17 or later (Debian's default JRE).
java:
	@java -version >/dev/null 2>&1 || { \
		echo "installing Debian's default JRE for the Spark engine's tests"; \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless; \
		elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless; \
		else echo "error: the Spark tests need Java 17+: apt-get install default-jre-headless" >&2; exit 2; fi; }

test: lint $(CHROMIUM) postgres-server java
	CHROMIUM=$(CHROMIUM) $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# The property tests of tests/test_fuzz.py with many more examples than `make test` runs.
fuzz: install
	PZ_FUZZ_EXAMPLES=5000 $(PY) -m pytest -q tests/test_fuzz.py

lint: install
	$(VENV)/bin/ruff check src worker tests
	$(VENV)/bin/mypy

# BATCH_SCALE="shoppers products events" (default: the issue's 1,000,000 100,000 20,000,000).
BATCH_SCALE ?= 1000000 100000 20000000
# The same build on Spark in local mode (local[2]), smaller: its self-join of the pairs is made for a cluster.
SPARK_SCALE ?= 100000 10000 2000000
# The build with tuning against without, side by side, at each "shoppers products events" of TUNE_SCALE.
TUNE_SCALE ?= 100000 10000 2000000 1000000 100000 20000000
bench: install kv-seed/out/kv.json
	$(PY) tests/bench/bench.py
	$(PY) tests/bench/store_bench.py
	$(PY) tests/bench/relevance_bench.py
	$(PY) tests/bench/batch_bench.py $(BATCH_SCALE)
	$(PY) tests/bench/batch_bench.py $(SPARK_SCALE) --engine=spark
	$(PY) tests/bench/tune_bench.py $(TUNE_SCALE)

# The origin as an AWS Lambda package (the `origin` extra only, x86_64 manylinux wheels for LAMBDA_PYTHON).
LAMBDA_PYTHON ?= 3.13
lambda: install
	$(PY) -m personalizer_adapters.origin.package --python $(LAMBDA_PYTHON) --out dist/lambda.zip

bundle: install
	npx wrangler deploy --dry-run --outdir dist/bundle

clean:
	rm -rf .wrangler kv-seed/out worker/personalizer dist .pytest_cache/d/pz-builds
