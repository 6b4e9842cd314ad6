# handrecon: the two commands of a fresh machine are `make install demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
# pytest: all cores, but the suite is sized for 2
PYTEST_ARGS ?= -q

.PHONY: install test test-fast demo bench bench-quick bench-gpu bench-adapt lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

install: $(PY)
	$(PIP) install -e ".[test,export,bench,sweep]"

test: $(PY)
	$(PY) -m pytest $(PYTEST_ARGS)

# everything but the tests marked slow (end-to-end subprocess runs, DDP, kill/resume, sweeps)
test-fast: $(PY)
	$(PY) -m pytest $(PYTEST_ARGS) -m "not slow"

# The main job on the embedded default: generate the synthetic dataset (cached), train the
# quickstart (ssl_e2e, tiny network, CPU), print metrics.json, then run predict on held-out images.
demo: $(PY)
	$(PY) -m handrecon experiment=quickstart hydra.run.dir=outputs/demo
	$(PY) -m handrecon task=predict ckpt=outputs/demo/checkpoints/best.ckpt input=synthetic:evaluation:8 out=outputs/demo/predict hydra.run.dir=outputs/demo/predict overwrite=true
	@echo "overlays and meshes: outputs/demo/predict/ ; metrics: outputs/demo/metrics.json"

bench: $(PY)
	$(PY) bench/run_all.py

bench-quick: $(PY)
	$(PY) bench/run_all.py --quick

# self-supervised adaptation to a second synthetic domain (README "Adapting to your own photos"): trains
# the quickstart (or reuses CKPT=outputs/demo/checkpoints/best.ckpt), adapts it with experiment=adapt_quickstart
# on the new domain's images + detections, prints PA-MPJPE before/after beside the mean pose (CPU)
bench-adapt: $(PY)
	$(PY) bench/bench_adapt.py $(if $(CKPT),--source-ckpt $(CKPT))

# the same benchmarks on a CUDA GPU in 16-mixed (the training step at batch 32/64, every stage's
# training time on FreiHAND/HO3D, inference, renderer memory); writes bench/results/gpu.json
bench-gpu: $(PY)
	$(PY) bench/bench_gpu.py

lint: $(PY)
	$(VENV)/bin/ruff check src tests bench

clean:
	rm -rf outputs multirun .pytest_cache
