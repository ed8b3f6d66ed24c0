#!/bin/sh
# Back up a radtriage data directory and its database while the service runs (docs/operations.md).
#
#   scripts/backup.sh DATA_DIR DEST [DATABASE_URL]
#
# DATABASE_URL (default: $RADTRIAGE_DATABASE_URL, else the SQLite file DATA_DIR/radtriage.db) is
# the service's database_url. DEST is a new folder (mode 0700): the database (radtriage.db, an
# SQLite online backup, or radtriage.pgdump, pg_dump's custom format), files.tar (the spool, key
# images and results, the development signing key) and MANIFEST. The database is copied first,
# so every file it names is in files.tar; a file stored meanwhile is copied unindexed (harmless).
set -eu

[ $# -ge 2 ] || { echo "usage: $0 DATA_DIR DEST [DATABASE_URL]" >&2; exit 2; }
data=$(cd "$1" && pwd) || { echo "backup: no data directory $1" >&2; exit 2; }
dest=$2
url=${3:-${RADTRIAGE_DATABASE_URL:-}}
PYTHON=${PYTHON:-python3}
[ ! -e "$dest" ] || { echo "backup: $dest already exists: give a new folder" >&2; exit 2; }
(umask 077 && mkdir -p "$dest")

# 1. The database, consistent as of one moment, without stopping the service.
case "$url" in
    postgresql*)
        pg_dump --format=custom --no-owner --no-privileges --file="$dest/radtriage.pgdump" \
            "$(echo "$url" | sed 's/^postgresql+[a-z0-9]*:/postgresql:/')"
        kind=postgresql ;;
    ""|sqlite:///*)
        db=${url#sqlite:///}
        [ -n "$db" ] || db="$data/radtriage.db"
        # SQLite's online backup API (what the sqlite3 shell's .backup does): a consistent copy
        # while the service keeps writing (WAL)
        "$PYTHON" -c 'import sqlite3, sys
src, dst = sqlite3.connect(sys.argv[1]), sqlite3.connect(sys.argv[2])
src.backup(dst)
dst.close(); src.close()' "$db" "$dest/radtriage.db"
        kind=sqlite ;;
    *) echo "backup: cannot back up database $url" >&2; exit 2 ;;
esac

# 2. The files. Not copied: Ray's temporary folder (and its token), staged files never acknowledged,
# the SQLite files (copied above) and the first admin's password file.
rc=0
tar -C "$data" -cf "$dest/files.tar" --warning=no-file-changed --exclude=./ray \
    --exclude='./spool/.incoming/*' --exclude=./radtriage.db --exclude=./radtriage.db-wal \
    --exclude=./radtriage.db-shm --exclude=./first-admin-password . || rc=$?
[ "$rc" -le 1 ] || { echo "backup: tar failed ($rc)" >&2; exit 1; }  # 1: a folder changed while read

{
    echo "data_dir=$data"
    echo "database=$kind"
    echo "taken_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
} > "$dest/MANIFEST"
echo "backup: $data ($kind database) -> $dest"
