#!/usr/bin/env bash
# Make sure PgBouncer is installed (Debian package `pgbouncer`): the tests start their own
# instance in transaction mode in front of the test PostgreSQL (tests/pgbouncer.py); the
# package's own service is not used.
set -euo pipefail

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

if command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ]; then
    echo "ensure-pgbouncer: $(/usr/sbin/pgbouncer --version 2>/dev/null | head -n 1 || pgbouncer --version | head -n 1)" >&2
    exit 0
fi
echo "ensure-pgbouncer: PgBouncer is not installed; installing it with apt-get" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq pgbouncer >/dev/null
echo "ensure-pgbouncer: $(/usr/sbin/pgbouncer --version | head -n 1)" >&2
