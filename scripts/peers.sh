#!/bin/sh
# `make peers`: the real programs the test suite talks to on loopback, installed or started.
#
#   dcmtk       storescu/echoscu as the scanner          (Debian package dcmtk)
#   Orthanc     a PACS, for `make bench`                 (orthanc)
#   Chromium    headless, for the page tests             (chromium)
#   PostgreSQL  the production database, 127.0.0.1:5432  (postgresql), with a role for this
#               user and a database `test` the suite creates its databases from
#
# As root with apt-get, missing packages are installed and a stopped cluster is started;
# otherwise this stops with the exact command to run. Each program's path can be overridden
# (PEER_STORESCU, PEER_ORTHANC, PEER_CHROMIUM), as can PG_HOST and PG_PORT.
set -eu

STORESCU=${PEER_STORESCU:-/usr/bin/storescu}   # by path: pynetdicom's venv has its own storescu
ORTHANC=${PEER_ORTHANC:-/usr/sbin/Orthanc}
CHROMIUM=${PEER_CHROMIUM:-/usr/bin/chromium}
PG_HOST=${PG_HOST:-127.0.0.1}
PG_PORT=${PG_PORT:-5432}
ME=$(id -un)

can_install() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }

stop() {  # the reason, then the command that fixes it
    echo "make peers: $1" >&2
    echo "  run:  $2" >&2
    echo "  (or \`make test NO_PEERS=1\`: the tests that need a missing peer are skipped, and counted at the end)" >&2
    exit 1
}

need=""
[ -x "$STORESCU" ] || need="$need dcmtk"
[ -x "$ORTHANC" ] || need="$need orthanc"
[ -x "$CHROMIUM" ] || need="$need chromium"
command -v pg_ctlcluster >/dev/null 2>&1 || need="$need postgresql"
need=${need# }

if [ -n "$need" ]; then
    if ! can_install; then
        stop "missing: $need" "sudo apt-get update && sudo apt-get install -y $need"
    fi
    echo "make peers: installing $need"
    DEBIAN_FRONTEND=noninteractive apt-get update -q || true
    # shellcheck disable=SC2086 # one word per package
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $need
    for exe in "$STORESCU" "$ORTHANC" "$CHROMIUM"; do
        [ -x "$exe" ] || stop "$exe is still missing after apt-get" "apt-get install -y $need"
    done
fi

# PostgreSQL: start the cluster on PG_PORT (else the newest one) if it is installed but stopped.
if ! pg_isready -q -h "$PG_HOST" -p "$PG_PORT" 2>/dev/null; then
    cluster=$(pg_lsclusters -h 2>/dev/null | awk -v port="$PG_PORT" '$3 == port { print $1 " " $2; exit }')
    [ -n "$cluster" ] || cluster=$(pg_lsclusters -h 2>/dev/null | sort -V | awk 'END { if (NR) print $1 " " $2 }')
    [ -n "$cluster" ] || stop "no PostgreSQL cluster (pg_lsclusters lists none)" \
        "sudo pg_createcluster --start --port $PG_PORT $(ls /usr/lib/postgresql | sort -V | tail -1) main"
    start="pg_ctlcluster --skip-systemctl-redirect $cluster start"
    if [ "$(id -u)" = 0 ]; then
        echo "make peers: starting PostgreSQL $cluster"
        $start
    else
        stop "PostgreSQL on $PG_HOST:$PG_PORT is not running" "sudo $start"
    fi
    pg_isready -q -t 30 -h "$PG_HOST" -p "$PG_PORT" || stop "PostgreSQL did not start" "sudo $start"
fi

# The suite connects as this user to the database `test` and creates one database per test.
if ! psql -h "$PG_HOST" -p "$PG_PORT" -d test -Atqc 'SELECT 1' >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
        stop "cannot connect to database 'test' on $PG_HOST:$PG_PORT as $ME" \
            "sudo -u postgres createuser --createdb $ME && sudo -u postgres createdb -O $ME test"
    fi
    echo "make peers: creating the PostgreSQL role $ME and database test"
    # A password in ~/.pgpass (read by libpq) rather than a 'trust' line in pg_hba.conf.
    password=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    runuser -u postgres -- psql -q -p "$PG_PORT" -v ON_ERROR_STOP=1 \
        -c "DO \$\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ME') THEN CREATE ROLE \"$ME\" LOGIN CREATEDB; END IF; END\$\$" \
        -c "ALTER ROLE \"$ME\" PASSWORD '$password'"
    runuser -u postgres -- psql -Atq -p "$PG_PORT" -c "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1 \
        || runuser -u postgres -- createdb -p "$PG_PORT" -O "$ME" test
    umask 077
    pgpass="$HOME/.pgpass"
    grep -v "^$PG_HOST:$PG_PORT:\*:$ME:" "$pgpass" 2>/dev/null > "$pgpass.new" || true
    echo "$PG_HOST:$PG_PORT:*:$ME:$password" >> "$pgpass.new"
    mv "$pgpass.new" "$pgpass"
    psql -h "$PG_HOST" -p "$PG_PORT" -d test -Atqc 'SELECT 1' >/dev/null \
        || stop "still cannot connect to database 'test' as $ME" "psql -h $PG_HOST -p $PG_PORT -d test"
fi
echo "make peers: dcmtk, Orthanc, Chromium and PostgreSQL ($PG_HOST:$PG_PORT) are ready"
