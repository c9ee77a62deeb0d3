#!/usr/bin/env bash
# Start Redis (and PostgreSQL with --postgres) on their standard local ports if they are not
# already answering. Installs them from Debian's packages when missing (needs root).
set -euo pipefail

want_pg=0
[ "${1:-}" = "--postgres" ] && want_pg=1

apt_install() {
  if ! command -v apt-get >/dev/null; then
    echo "services.sh: $* missing and no apt-get to install it" >&2; exit 1
  fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

redis_up() { python3 - <<'PY'
import socket, sys
s = socket.socket(); s.settimeout(1)
try:
    s.connect(("127.0.0.1", 6379)); s.sendall(b"PING\r\n"); sys.exit(0 if s.recv(16).startswith(b"+PONG") else 1)
except OSError:
    sys.exit(1)
PY
}

if ! redis_up; then
  command -v redis-server >/dev/null || apt_install redis-server
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/judgeserve.log
  for _ in $(seq 50); do redis_up && break; sleep 0.1; done
  redis_up || { echo "services.sh: Redis did not start" >&2; exit 1; }
  echo "started Redis on 127.0.0.1:6379"
fi

[ "$want_pg" = 1 ] || exit 0

if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  command -v pg_ctlcluster >/dev/null || apt_install postgresql
  ver=$(ls /etc/postgresql | sort -V | tail -1)
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start
  for _ in $(seq 100); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.1; done
  pg_isready -q -h 127.0.0.1 -p 5432 || { echo "services.sh: PostgreSQL did not start" >&2; exit 1; }
  echo "started PostgreSQL on 127.0.0.1:5432"
fi
# The tests use database `test` as user postgres over TCP (trust auth on this machine's setup).
if ! psql -h 127.0.0.1 -U postgres -d test -Atc 'select 1' >/dev/null 2>&1; then
  su postgres -c "createdb test" 2>/dev/null || psql -h 127.0.0.1 -U postgres -c 'create database test' || true
fi
psql -h 127.0.0.1 -U postgres -d test -Atc 'select 1' >/dev/null \
  || { echo "services.sh: cannot reach PostgreSQL database 'test' as postgres@127.0.0.1" >&2; exit 1; }
