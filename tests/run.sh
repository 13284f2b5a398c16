#!/usr/bin/env bash
# Sets up and runs the whole test suite: the README's second command, and what CI calls.
# Creates .venv if needed, installs the project with its dev extra, installs Debian's
# chromium for the browser test when it is missing (as root), then runs pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's chromium for the browser test..." >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }
  else
    echo "chromium is not installed and cannot be installed here: the browser test will skip" >&2
  fi
fi
exec .venv/bin/python -m pytest "$@"
