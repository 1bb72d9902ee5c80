# Set-up, tests and the demo on a fresh machine: `make demo`, `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install browser test demo lint bench clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c requirements.lock -e '.[dev,screen,ray]'
	touch $(STAMP)

install: $(STAMP)

# headless Chromium for the report's browser test (Debian packages; root or sudo)
browser:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || { \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -q && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; \
	} || { echo "make: could not install chromium and chromium-driver with apt-get" >&2; exit 1; }

test: install browser
	$(PY) -m pytest -q -ra -n 2 --dist loadfile

lint: install
	$(VENV)/bin/ruff check .

demo: install
	$(VENV)/bin/cfmc infill '225-a-[?]-0-0-0-b-[?]-1/2-1/2-c-[?]-1/4-1/4-e-[?]-[?]-0-0' \
		--differ 0,1 --differ 0,2 --differ 0,3 --differ 1,2 --differ 1,3 --differ 2,3 \
		--block --block-proposal pool --block-tries 8 --init pool --burn-in auto \
		--until-rhat 1.01 --chains 128 --sweeps 400 --top 100 --seed 0 --out runs/demo --force

bench: install
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
