# Everything installs into .venv from the project's own files; nothing is assumed on the machine
# beyond python3 (with venv), make and redis-server; as root it adds Debian's promtool (unpacked)
# and chromium.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PROMTOOL := $(VENV)/bin/promtool

.PHONY: install compile demo test bench lint clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip uv
	# uv installs the same packages from PyPI in a quarter of pip's time.
	$(VENV)/bin/uv pip install --quiet --python $(PY) -e '.[dev]'
	@# Bytecode compiled once: these machines set PYTHONDONTWRITEBYTECODE, so every process
	@# (each worker a test starts) compiled every module again: 10 s to import, 4 s compiled.
	@# A file that does not compile (a package's own Python 2 fixtures) only stays uncached.
	@# Packages' own test suites are never imported: left out, the step takes 24 s, not 35.
	$(PY) -m compileall -q -j 0 -x '/tests?/' $(VENV)/lib > /dev/null || true
	touch $(STAMP)

# promtool (Debian's prometheus package) checks and unit-tests the alert rules in deploy/.
$(PROMTOOL): deploy/install-promtool.sh | $(STAMP)
	sh deploy/install-promtool.sh $(PROMTOOL)


# The explorer's browser test (tests/test_explorer.py) drives Debian's chromium package.
CHROMIUM := /usr/bin/chromium

$(CHROMIUM):
	@if [ "$$(id -u)" -ne 0 ]; then \
		echo "chromium is missing: as root, apt-get install chromium" >&2; exit 1; fi
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium

install: $(STAMP) $(PROMTOOL) $(CHROMIUM)

# The project's own modules, compiled as the installed ones are (see $(STAMP)).
compile: $(STAMP)
	@$(PY) -m compileall -q features segmenter streams > /dev/null

demo: $(STAMP) compile
	$(VENV)/bin/segmenter demo $(ARGS)

test: $(STAMP) $(PROMTOOL) $(CHROMIUM) compile
	$(VENV)/bin/ruff check .
	@# Most tests wait on brokers and workers (the two cores were 60% busy), so four run at a
	@# time, a file's tests in one process: a module's shared fixture is computed once (the
	@# behaviour tests' shop run took 30 s in each process). The few that measure time (loop
	@# lag, send rates) run alone afterwards. Both parts run; either failing fails.
	$(VENV)/bin/pytest -n 4 --dist loadfile -m "not serial"; parallel=$$?; \
	$(VENV)/bin/pytest -m serial; serial=$$?; \
	exit $$(( parallel || serial ))

bench: $(STAMP) compile
	$(VENV)/bin/segmenter bench $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache *.egg-info
