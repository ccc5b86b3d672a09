#!/usr/bin/env bash
# Quick start, command 1: set up, then run every daily/weekly/quarterly job once on the demo
# company (data/demo) against the embedded default store (SQLite under data/) with Prefect
# in ephemeral mode (no server needed). Prints the license position and where the outputs are.
set -euo pipefail
cd "$(dirname "$0")/.."
# Cache compiled bytecode in .venv: without it every process recompiles Prefect (seconds).
unset PYTHONDONTWRITEBYTECODE
bash scripts/setup.sh
exec .venv/bin/slm demo "$@"
