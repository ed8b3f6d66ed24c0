#!/bin/sh
# Restore a backup made by scripts/backup.sh (docs/operations.md).
#
#   scripts/restore.sh BACKUP DATA_DIR [DATABASE_URL]
#
# DATA_DIR must be new or empty. DATABASE_URL (default: $RADTRIAGE_DATABASE_URL, else the SQLite
# file DATA_DIR/radtriage.db) must name an existing, empty PostgreSQL database for a PostgreSQL
# backup. Start radtriage on the restored copy afterwards: its migrations run at start-up, so a
# backup taken by an older version is upgraded then.
#
# The database names every stored file by its absolute path: restore to the data directory's
# old path (MANIFEST's data_dir) for a working copy. Elsewhere (a check copy) the worklist,
# accounts and audit trail are served, but images and key images are looked for at the old path.
set -eu

[ $# -ge 2 ] || { echo "usage: $0 BACKUP DATA_DIR [DATABASE_URL]" >&2; exit 2; }
backup=$1 data=$2
url=${3:-${RADTRIAGE_DATABASE_URL:-}}
[ -f "$backup/MANIFEST" ] && [ -f "$backup/files.tar" ] || { echo "restore: $backup is not a backup" >&2; exit 2; }
if [ -d "$data" ] && [ -n "$(ls -A "$data")" ]; then
    echo "restore: $data is not empty: restore into a new folder" >&2
    exit 2
fi
(umask 077 && mkdir -p "$data")
tar -C "$data" -xf "$backup/files.tar"

if [ -f "$backup/radtriage.pgdump" ]; then
    case "$url" in
        postgresql*) ;;
        *) echo "restore: a PostgreSQL backup needs the DATABASE_URL of an empty database" >&2; exit 2 ;;
    esac
    pg_restore --no-owner --no-privileges --exit-on-error \
        --dbname="$(echo "$url" | sed 's/^postgresql+[a-z0-9]*:/postgresql:/')" "$backup/radtriage.pgdump"
else
    db=${url#sqlite:///}
    [ -n "$db" ] || db="$data/radtriage.db"
    [ ! -e "$db" ] || { echo "restore: $db already exists" >&2; exit 2; }
    cp "$backup/radtriage.db" "$db"
    chmod 600 "$db"
fi

old=$(sed -n 's/^data_dir=//p' "$backup/MANIFEST")
new=$(cd "$data" && pwd)
echo "restore: $backup -> $new"
if [ "$old" != "$new" ]; then
    echo "restore: note: the backup was taken of $old; the database looks for stored files there" >&2
fi
