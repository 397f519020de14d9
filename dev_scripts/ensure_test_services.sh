#!/bin/sh
# Starts and installs what the test suite needs and the machine may lack:
# - the PostgreSQL server (started if it is not answering);
# - the Redis server on 127.0.0.1:6379, the Celery broker of tests/airflow/test_scheduler.py
#   (installed from Debian when missing and we are root; started if it is not answering);
# - Debian's docker-compose 1.29 (static check of the compose files; needs no container
#   engine), prometheus/promtool (monitoring tests) and chromium with chromium-driver (storefront
#   browser tests), installed when missing and we are root.
# The S3 server (moto_server) is started by the tests themselves; hadolint and schemathesis
# come from requirements-dev.txt.
set -eu

# Debian package names (no spaces), separated by spaces.
missing_packages=""
command -v docker-compose >/dev/null || missing_packages="$missing_packages docker-compose"
command -v prometheus >/dev/null || missing_packages="$missing_packages prometheus"
# The storefront's browser tests drive Debian's chromium through its chromium-driver.
command -v chromium >/dev/null || missing_packages="$missing_packages chromium"
command -v chromedriver >/dev/null || missing_packages="$missing_packages chromium-driver"
command -v redis-server >/dev/null || missing_packages="$missing_packages redis-server"
if [ -n "$missing_packages" ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        echo "installing Debian packages for the tests:$missing_packages"
        apt-get update -qq
        # shellcheck disable=SC2086 # one word per package
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing_packages
    else
        echo "warning:$missing_packages missing; their tests will skip (or fail under CI=true)"
    fi
fi

PGHOST_ADDR="${RECSYS_TEST_PGHOST:-127.0.0.1}"
PGPORT_NUM="${RECSYS_TEST_PGPORT:-5432}"

if command -v pg_isready >/dev/null && ! pg_isready -q -h "$PGHOST_ADDR" -p "$PGPORT_NUM"; then
    if command -v pg_ctlcluster >/dev/null; then
        version=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -n | tail -n 1)
        echo "PostgreSQL is not answering on $PGHOST_ADDR:$PGPORT_NUM; starting cluster $version/main"
        pg_ctlcluster --skip-systemctl-redirect "$version" main start
        for _ in $(seq 1 30); do
            pg_isready -q -h "$PGHOST_ADDR" -p "$PGPORT_NUM" && break
            sleep 1
        done
    fi
fi
pg_isready -h "$PGHOST_ADDR" -p "$PGPORT_NUM" || echo "warning: PostgreSQL is not reachable; its tests will skip (or fail under CI=true)"

REDIS_PORT_NUM="${RECSYS_TEST_REDIS_PORT:-6379}"
if command -v redis-cli >/dev/null && ! redis-cli -h 127.0.0.1 -p "$REDIS_PORT_NUM" ping >/dev/null 2>&1; then
    if command -v redis-server >/dev/null; then
        echo "Redis is not answering on 127.0.0.1:$REDIS_PORT_NUM; starting redis-server"
        redis-server --bind 127.0.0.1 --port "$REDIS_PORT_NUM" --daemonize yes --save "" --appendonly no
        for _ in $(seq 1 30); do
            redis-cli -h 127.0.0.1 -p "$REDIS_PORT_NUM" ping >/dev/null 2>&1 && break
            sleep 1
        done
    fi
fi
redis-cli -h 127.0.0.1 -p "$REDIS_PORT_NUM" ping >/dev/null 2>&1 \
    || echo "warning: Redis is not reachable on 127.0.0.1:$REDIS_PORT_NUM; its tests will skip (or fail under CI=true)"
