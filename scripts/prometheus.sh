#!/usr/bin/env bash
# Make sure Debian's Prometheus is installed for the test that scrapes /metrics with a real
# Prometheus server (tests/test_prometheus.py starts it on a free port; the package's own
# service is never used). Installs it with apt-get when missing (needs root); says why and
# exits non-zero when it cannot.
set -euo pipefail

for candidate in "${JUDGESERVE_PROMETHEUS:-}" /usr/bin/prometheus; do
  if [ -n "$candidate" ] && [ -x "$candidate" ]; then
    echo "prometheus.sh: using $candidate"
    exit 0
  fi
done

if ! command -v apt-get >/dev/null; then
  echo "prometheus.sh: prometheus is missing and there is no apt-get to install it;" \
       "install Prometheus and set JUDGESERVE_PROMETHEUS=/path/to/prometheus" >&2
  exit 1
fi
if [ "$(id -u)" != 0 ]; then
  echo "prometheus.sh: prometheus is missing and installing it needs root:" \
       "sudo apt-get update && sudo apt-get install -y prometheus" >&2
  exit 1
fi
echo "prometheus.sh: installing Debian's prometheus for the /metrics test"
# policy-rc.d answers 101 ("not allowed"): the package's service is not started here.
policy=/usr/sbin/policy-rc.d
made_policy=
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
fi
status=0
{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null; } || status=$?
[ -n "$made_policy" ] && rm -f "$policy"
if [ "$status" != 0 ]; then
  echo "prometheus.sh: 'apt-get install prometheus' failed (no network or no package?);" \
       "the Prometheus test will be skipped" >&2
  exit 1
fi
[ -x /usr/bin/prometheus ] || { echo "prometheus.sh: installed but /usr/bin/prometheus is missing" >&2; exit 1; }
echo "prometheus.sh: installed $(/usr/bin/prometheus --version 2>&1 | head -1)"
