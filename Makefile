# `make run`: a development server with the built-in WeChat emulator on http://$(HOST):$(PORT)
#             (`make run HOST=0.0.0.0` listens on the LAN, for a phone or DevTools elsewhere)
# `make test`: the architecture contracts (.importlinter), the whole test suite (SQLite; more
#              databases with TEST_DATABASE_URLS; the /docs browser test when chromium is
#              installed) in parallel, a pytest-xdist worker per core plus one (PYTEST_WORKERS=0:
#              in one process; PYTEST_ARGS are passed on), and alongside it the client kit's
#              (miniprogram/kit: adapters, packed tarball, tsc) and the OpenAPI document's
#              tests with node (a file per core at once; their output follows pytest's) when
#              node and npm are installed
# `make messages`: extract the translatable strings, update and compile the Chinese catalogue
PYTHON ?= python3
VENV   ?= .venv
PORT   ?= 5000
HOST   ?= 127.0.0.1
# pytest-xdist workers: one more than the cores (many tests wait on the servers they start)
PYTEST_WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))
BIN     = $(VENV)/bin
NODE_TEST = miniprogram/test

.PHONY: run test install clean messages bench node-deps

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

.env:
	cp .env.example .env

run: install .env
	$(BIN)/flask --app wsgi db upgrade
	PORT=$(PORT) $(BIN)/flask --app wsgi run --host $(HOST) --port $(PORT)

test: install
	$(BIN)/lint-imports --no-cache
	@node_log=$$(mktemp) && node_pid= && \
	if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory node-deps || exit 1; \
		WXAUTH_PYTHON="$(abspath $(BIN))/python" node --test --test-concurrency=$$(nproc) \
			--test-reporter=spec miniprogram/test/*.test.js >$$node_log 2>&1 & node_pid=$$!; \
	elif [ -n "$$REQUIRE_NODE" ]; then \
		echo "node and npm are required for the mini-program tests (REQUIRE_NODE is set)"; exit 1; \
	else \
		echo "*** node or npm not found: SKIPPING the mini-program tests (miniprogram/test) ***"; \
	fi; \
	echo "$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)"; \
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS); status=$$?; \
	if [ -n "$$node_pid" ]; then \
		wait $$node_pid; node_status=$$?; \
		echo "--- mini-program client kit and OpenAPI document (node --test, run alongside pytest) ---"; \
		cat $$node_log; [ $$status -ne 0 ] || status=$$node_status; \
	fi; \
	rm -f $$node_log; exit $$status

# the node tests' own packages (ajv for the OpenAPI test; acorn, typescript and the wx, uni
# and Taro typings for the kit's; jose for tests/test_keys_gunicorn.py, which verifies tokens
# with the README's Node snippet), exactly as locked (miniprogram/test/.npmrc: no peers)
node-deps: $(NODE_TEST)/node_modules/.installed tests/js/node_modules/.installed

$(NODE_TEST)/node_modules/.installed: $(NODE_TEST)/package.json $(NODE_TEST)/package-lock.json $(NODE_TEST)/.npmrc
	npm ci --prefix $(NODE_TEST) --no-audit --no-fund --loglevel=error
	touch $@

tests/js/node_modules/.installed: tests/js/package.json tests/js/package-lock.json
	npm ci --prefix tests/js --no-audit --no-fund --loglevel=error
	touch $@

# The login-path benchmark (bench/run.py); installs wrk from Debian's packages when missing.
# Then the support console's search over 1,000,000 users on PostgreSQL (bench/search.py;
# SEARCH_ARGS, e.g. --postgres URL; skipped when no PostgreSQL answers).
bench: install
	@command -v wrk >/dev/null 2>&1 || (apt-get install -y wrk || sudo apt-get install -y wrk)
	$(BIN)/python bench/run.py $(BENCH_ARGS)
	$(BIN)/python bench/search.py $(SEARCH_ARGS)

# The Chinese problem texts (wxauth/i18n.py): strings marked with _l → messages.pot → the
# zh_Hans catalogue (new entries come in empty: translate them, then run this again) → .mo,
# which is committed (tests/test_i18n.py checks that it matches the .po).
CATALOGUE = wxauth/translations
messages: install
	$(BIN)/pybabel extract -F babel.cfg -k _l --add-location=file --sort-by-file \
		--project=wxauth -o $(CATALOGUE)/messages.pot .
	$(BIN)/pybabel update -i $(CATALOGUE)/messages.pot -d $(CATALOGUE) -l zh_Hans -w 100 \
		--no-fuzzy-matching
	$(BIN)/pybabel compile -d $(CATALOGUE) --statistics

clean:
	rm -rf $(VENV) .pytest_cache $(NODE_TEST)/node_modules
