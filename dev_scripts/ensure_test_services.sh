#!/usr/bin/env bash
# Starts what the test suite needs and the machine may not be running: the PostgreSQL server.
# (The S3 server, moto_server, is started by the tests themselves.)
set -euo pipefail

PGHOST_ADDR="${RECSYS_TEST_PGHOST:-127.0.0.1}"
PGPORT_NUM="${RECSYS_TEST_PGPORT:-5432}"

if command -v pg_isready >/dev/null && ! pg_isready -q -h "$PGHOST_ADDR" -p "$PGPORT_NUM"; then
    if command -v pg_ctlcluster >/dev/null; then
        version=$(ls /etc/postgresql | sort -n | tail -n 1)
        echo "PostgreSQL is not answering on $PGHOST_ADDR:$PGPORT_NUM; starting cluster $version/main"
        pg_ctlcluster --skip-systemctl-redirect "$version" main start
        for _ in $(seq 1 30); do
            pg_isready -q -h "$PGHOST_ADDR" -p "$PGPORT_NUM" && break
            sleep 1
        done
    fi
fi
pg_isready -h "$PGHOST_ADDR" -p "$PGPORT_NUM" || echo "warning: PostgreSQL is not reachable; its tests will skip (or fail under CI=true)"
