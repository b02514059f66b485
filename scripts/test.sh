#!/usr/bin/env bash
# The whole suite (`make test` lints and type-checks first). In CI (CI=true) a skipped test is a failure: Docker- and model-backed
# tests must really run there. pytest's exit code 5 (no tests collected) is a failure too.
set -euo pipefail
cd "$(dirname "$0")/.."
set +e
.venv/bin/python -m pytest -ra -p no:cacheprovider "$@" | tee .pytest-output.txt
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: failing on purpose" >&2
  exit 1
fi
if [ "$rc" -ne 0 ]; then exit "$rc"; fi
if [ "${CI:-}" = "true" ] && grep -qE "^SKIPPED" .pytest-output.txt; then
  echo "tests were skipped in CI: Docker- and model-backed tests must run here" >&2
  exit 1
fi
