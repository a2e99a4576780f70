#!/usr/bin/env bash
# One entry point for a fresh Debian machine: installs what is missing, then
#   bash scripts/run.sh demo [options]   the whole study on the embedded default, to reports/
#   bash scripts/run.sh test             ruff + the whole test suite
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-}
shift || true

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  # Debian packages the tool drives: prosody (sandboxed server), nginx (the --via-proxy
  # front), chromium (the report's browser test). Their services are not started.
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing Debian packages: ${missing[*]}" >&2
  local policy=/usr/sbin/policy-rc.d made_policy=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null && as_root chmod +x "$policy" && made_policy=1
  fi
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ -n "$made_policy" ] && as_root rm -f "$policy"
  return 0
}

python_env() {
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv 2>/dev/null || { apt_install python3-venv; python3 -m venv .venv; }
  fi
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
}

case "$what" in
  test)
    apt_install prosody nginx chromium
    python_env
    .venv/bin/ruff check .
    .venv/bin/python -m pytest -q "$@"
    ;;
  demo)
    apt_install prosody nginx
    python_env
    .venv/bin/prosody-analyze demo "$@"
    ;;
  *)
    echo "usage: bash scripts/run.sh demo|test [options]" >&2
    exit 2
    ;;
esac
