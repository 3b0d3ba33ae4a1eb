#!/usr/bin/env bash
# Runs every benchmark on 127.0.0.1 and writes bench/results/*.{md,json}.
# Installs what it drives (Debian packages nsd, unbound, python3-unbound, dnsperf) when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
missing=()
for tool in nsd unbound dnsperf; do command -v "$tool" >/dev/null || missing+=("$tool"); done
# compare.py's module rows: Unbound's Python module support (docs/unbound.md)
[ -f /usr/lib/python3/dist-packages/unboundmodule.py ] || missing+=(python3-unbound)
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${missing[@]}"
fi
"$PY" bench/compare.py --seconds "${SECONDS_PER_RUN:-10}"
"$PY" bench/faults.py --seconds 6
"$PY" bench/lists.py --entries 1000000
"$PY" bench/model.py
"$PY" bench/adversarial.py --seconds 8 --reloads 1000
"$PY" bench/fuzz.py --packets 1000000 --seconds 300
