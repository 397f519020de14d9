#!/usr/bin/env bash
# Runs once, when the PostgreSQL volume is first initialised: besides Airflow's metadata
# database, create the database of the recommendation tables, owned by the same user.
set -euo pipefail

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v db="$RECSYS_DB_NAME" -v owner="$POSTGRES_USER" <<'SQL'
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'owner')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db')\gexec
SQL
