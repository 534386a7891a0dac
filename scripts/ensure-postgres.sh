#!/usr/bin/env bash
# Make sure a PostgreSQL server answers on 127.0.0.1:5432 with trust auth for user `root`
# and a database `test`: start it if it is down, install it (Debian) if it is missing.
set -euo pipefail

HOST=127.0.0.1
PORT=5432
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

ready() { pg_isready -q -h "$HOST" -p "$PORT" 2>/dev/null; }

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "ensure-postgres: PostgreSQL is not installed; installing it with apt-get" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
fi

version=$(ls /etc/postgresql | sort -V | tail -n 1)
if ! ready; then
    echo "ensure-postgres: starting cluster $version/main" >&2
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 30); do ready && break; sleep 1; done
fi
if ! ready; then
    echo "ensure-postgres: PostgreSQL did not come up on $HOST:$PORT" >&2
    exit 1
fi

# A fresh install has neither the role nor trust auth on TCP: set both up once.
if ! psql -h "$HOST" -p "$PORT" -U root -d postgres -c "SELECT 1" >/dev/null 2>&1; then
    hba="/etc/postgresql/$version/main/pg_hba.conf"
    if ! grep -q "^host all all 127.0.0.1/32 trust" "$hba"; then
        $SUDO sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
        $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main reload
    fi
    $SUDO su postgres -c "psql -qc \"DO \\\$\\\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'root') THEN CREATE ROLE root SUPERUSER LOGIN; END IF; END\\\$\\\$\""
fi
if ! psql -h "$HOST" -p "$PORT" -U root -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1; then
    psql -h "$HOST" -p "$PORT" -U root -d postgres -qc "CREATE DATABASE test"
fi
echo "ensure-postgres: ready on $HOST:$PORT" >&2
