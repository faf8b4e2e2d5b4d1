#!/usr/bin/env bash
# The two commands of the README, and all the set-up they need on a fresh machine:
#   ./run_all.sh            creates .venv if missing, installs the project, runs every registered
#                           experiment at the default preset, writes results/REPORT.md
#   ./run_all.sh --tests    the same set-up, then the test suite (what CI runs)
# Other arguments pass through: ./run_all.sh --preset smoke, ./run_all.sh --only vqa,
#   ./run_all.sh --tests -k trainer
set -euo pipefail
cd "$(dirname "$0")"

pick_python() {
  for c in "${PYTHON:-}" python3.12 python3.11 python3.10 python3; do
    [ -n "$c" ] || continue
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
      echo "$c"; return 0
    fi
  done
  echo "error: Python >= 3.10 not found (set PYTHON=/path/to/python3)" >&2; return 1
}

setup() {
  if [ ! -x .venv/bin/python ]; then
    local py; py=$(pick_python)
    echo "[setup] creating .venv with $($py --version)"
    "$py" -m venv .venv
  fi
  # Reinstall only when the pins changed; the stamp is the hash of pyproject.toml.
  local stamp; stamp=$(sha256sum pyproject.toml | cut -c1-16)
  if [ "$(cat .venv/.installed 2>/dev/null)" != "$stamp" ]; then
    echo "[setup] installing the project and its pinned dependencies into .venv (a few minutes, once)"
    .venv/bin/python -m pip install -q --upgrade pip setuptools wheel >.venv/install.log 2>&1 || true
    if ! .venv/bin/python -m pip install -q -e . >>.venv/install.log 2>&1; then
      grep -v "^WARNING: Location" .venv/install.log | tail -30 >&2
      echo "error: installing the dependencies failed (full log: .venv/install.log)" >&2
      exit 1
    fi
    echo "$stamp" > .venv/.installed
  fi
}

setup
export PYTHONUNBUFFERED=1
if [ "${1:-}" = "--tests" ]; then
  shift
  exec .venv/bin/python -m pytest "$@"
fi
preset_given=0
for a in "$@"; do [ "$a" = "--preset" ] && preset_given=1; done
if [ $preset_given = 1 ]; then
  exec .venv/bin/python -m common.run --all "$@"
fi
exec .venv/bin/python -m common.run --all --preset default "$@"
