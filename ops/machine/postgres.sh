#!/usr/bin/env bash
# PostgreSQL for the tests: Debian's server on 127.0.0.1:5432, trust for loopback, database `test`.
# Idempotent: installs the package only when missing, creates a cluster only when there is none,
# and starts it only when it is down. Run by `make postgres` (and so by `make test`).
set -euo pipefail

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

if ! command -v pg_lsclusters >/dev/null || [ -z "$(ls /usr/lib/postgresql 2>/dev/null)" ]; then
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends postgresql
fi

version="$(ls /usr/lib/postgresql | sort -n | tail -1)"
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$version main"; then
    $SUDO pg_createcluster --port 5432 "$version" main
fi

# The tests connect as `postgres` over TCP without a password: trust loopback (a test machine's
# server, never a deployment's), placed first so it wins over Debian's scram-sha-256 lines.
hba="/etc/postgresql/$version/main/pg_hba.conf"
marker="# tsunagu tests: trust loopback"
if ! $SUDO grep -qF "$marker" "$hba"; then
    tmp="$(mktemp)"
    { echo "$marker"; echo "host all all 127.0.0.1/32 trust"; echo "host all all ::1/128 trust"; \
      $SUDO cat "$hba"; } >"$tmp"
    $SUDO install -o postgres -g postgres -m 0640 "$tmp" "$hba"
    rm -f "$tmp"
    if pg_isready -q -h 127.0.0.1 -p 5432; then
        $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main reload
    fi
fi

if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start
fi
for _ in $(seq 1 30); do
    pg_isready -q -h 127.0.0.1 -p 5432 && break
    sleep 1
done
pg_isready -q -h 127.0.0.1 -p 5432 || { echo "PostgreSQL did not start on 127.0.0.1:5432" >&2; exit 1; }

if ! psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='test'" \
        | grep -q 1; then
    psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE test"
fi
