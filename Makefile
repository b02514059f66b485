# Two entry points: `make demo` and `make test`. Both set up everything they need, idempotently.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
ISE := $(VENV)/bin/ise
# Reinstall whenever pyproject.toml changes.
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: setup venv engine image model browser demo test lint bench clean

setup: venv engine image model

venv: $(STAMP)
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU torch first: otherwise sentence-transformers pulls a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[all,dev]'
	# AgentBench-OS tasks for `ise eval --tasks agentbench-os`: data files only, so none of its dependencies.
	$(PY) -m pip install -q --no-deps inspect-evals==0.26.0
	rm -f $(VENV)/.installed-*
	touch $@

engine: venv
	$(ISE) sandbox engine

image: engine
	$(ISE) sandbox build

model: venv
	$(ISE) llm fetch -m qwen2.5-coder-0.5b
	$(ISE) llm fetch -m qwen2.5-coder-1.5b

demo: setup
	$(ISE) run -c configs/demo.yaml

# Headless Chromium for the trace viewer's tests (Debian's package; installed once).
browser:
	command -v chromium >/dev/null || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium)

test: setup browser lint
	bash scripts/test.sh

lint: venv
	$(VENV)/bin/ruff check ise tests bench
	$(VENV)/bin/ruff format --check ise tests bench
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) runs .mypy_cache .ruff_cache .pytest_cache
