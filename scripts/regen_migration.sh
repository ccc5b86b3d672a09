#!/usr/bin/env bash
# Rebuilds migrations/versions/0001_initial_store.py from schemas/store.py. Only while nothing
# has shipped: once a release exists, add a new migration instead
# (`alembic revision --autogenerate -m "..."`). Hand-written migrations (0002+) are kept.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
mv migrations/versions/0001_initial_store.py "$tmp/old.py"
hand=$(ls migrations/versions/ | grep -E '^0[0-9]{3}_.*\.py$' || true)
for f in $hand; do mv "migrations/versions/$f" "$tmp/"; done
if ! SLM_DATABASE_URL="sqlite:///$tmp/empty.db" .venv/bin/alembic revision --autogenerate \
    -m "initial store" --rev-id 0001 >/dev/null; then
  mv "$tmp/old.py" migrations/versions/0001_initial_store.py
  for f in $hand; do mv "$tmp/$f" migrations/versions/; done
  echo "autogenerate failed; kept the old migration" >&2; exit 1
fi
for f in $hand; do mv "$tmp/$f" migrations/versions/; done
.venv/bin/ruff format -q migrations/
.venv/bin/ruff check -q --fix migrations/ >/dev/null
echo "regenerated migrations/versions/0001_initial_store.py"
