#!/usr/bin/env bash
# Quick start, command 2: set up, then run the whole test suite, lint included.
# PostgreSQL tests use SLM_TEST_POSTGRES_URL (default: postgres on 127.0.0.1:5432) and skip
# with a reason when no server answers, unless SLM_REQUIRE_POSTGRES=1 (CI sets it).
set -euo pipefail
cd "$(dirname "$0")/.."
# Cache compiled bytecode in .venv: without it every process recompiles Prefect (seconds).
unset PYTHONDONTWRITEBYTECODE
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/pytest -n 2 "$@"
