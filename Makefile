# xanesdb: `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed-stamp
TEST_STAMP := $(VENV)/.installed-test-stamp
# a throw-away home for the demo's local database, unless the user set one
export XANESDB_HOME ?= $(CURDIR)/.xanesdb

.PHONY: install demo test test-fast bench bench-learning bench-measured clean stop

# the core (what `make demo` uses: populate, query, train on CPU); the test extra adds pytest,
# FireWorks (the cluster tests) and JAX on CPU (the second Keras backend)
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(PIP) install -q -e ".[test]"
	touch $(TEST_STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/xanesdb demo

# the suite on pytest-xdist workers, one a core up to 4 (each file on one worker: its module
# fixtures start once); TEST_WORKERS=0 runs it in this process
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ $$n -gt 4 ] && n=4; echo $$n)
test: $(TEST_STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile

test-fast: $(TEST_STAMP)
	$(PY) -m pytest -q -m "not slow and not integration" -n $(TEST_WORKERS) --dist loadfile

# self-contained benchmarks (each starts what it needs; FEFF ones run FEFF10 on real Cu sites;
# bench_engines needs FireWorks, from the test extra)
bench: $(TEST_STAMP)
	for b in dedup train inference engines feff_scaling feff_presets; do $(PY) benchmarks/bench_$$b.py || exit 1; done

# the learning tables and the FEFF batch-order replay of the README, from the shipped database (about 1 h on 2 cores)
BENCH_DATA ?= $(XANESDB_HOME)/bench_tables.npz
bench-learning: $(STAMP)
	$(VENV)/bin/xanesdb db load-bundled
	$(VENV)/bin/xanesdb spectra build
	$(PY) benchmarks/bench_batch_order.py
	$(PY) benchmarks/bench_gpu_table.py export $(BENCH_DATA)
	$(PY) benchmarks/bench_gpu_table.py table $(BENCH_DATA) --only Ti,V,Cr,Mn,Fe,Co,Ni,Cu
	$(PY) benchmarks/bench_ensemble.py $(BENCH_DATA) --ensemble 5
	for el in Fe Mn Cu; do $(PY) benchmarks/bench_small_data.py $(BENCH_DATA) --dataset $$el --min-steps 3000 || exit 1; done

stop:
	-$(VENV)/bin/xanesdb db stop

clean: stop
	rm -rf $(VENV) .xanesdb build *.egg-info

# the measured-spectra table of the README: models per configuration scored on ../shared/data/experimental_dev
bench-measured: $(TEST_STAMP)
	$(VENV)/bin/xanesdb db load-bundled
	$(VENV)/bin/xanesdb spectra build
	$(PY) benchmarks/bench_measured.py --configs shipped --detail shipped --out benchmarks/results/measured/shipped | tee benchmarks/results/measured_shipped.txt
	$(PY) benchmarks/bench_measured.py --configs grid-fast-shift+noise,aligned-fast-measured,aligned-fast2scf-measured,aligned-fast2scf-measured-nodamping,aligned-scf+fast2scf-measured-edge --elements Ti,V,Mn,Fe,Ni,Cu --n-models 3 --min-steps 600 --detail aligned-scf+fast2scf-measured-edge --out benchmarks/results/measured/ablation | tee benchmarks/results/measured_ablation.txt
