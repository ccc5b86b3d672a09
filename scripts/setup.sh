#!/usr/bin/env bash
# Creates .venv (if missing) and installs licenseflow with its dev tools into it.
# Idempotent: a second run only checks that everything is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
# Cache compiled bytecode in .venv: without it every process recompiles Prefect (seconds).
unset PYTHONDONTWRITEBYTECODE

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "Creating the virtual environment in .venv ..."
  "$PYTHON" -m venv .venv
fi
# uv installs the ~150 dependencies in seconds; pip is the fallback.
if [ ! -x .venv/bin/uv ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check uv || true
fi
# --compile-bytecode: write every module's .pyc at install time, so processes start fast even
# where PYTHONDONTWRITEBYTECODE is set (else each flow process compiles Prefect, pandas, dask
# from source: seconds per process).
if [ -x .venv/bin/uv ]; then
  .venv/bin/uv pip install --quiet --compile-bytecode --python .venv/bin/python -e ".[dev]"
else
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
fi
