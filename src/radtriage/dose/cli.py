"""``radtriage dose``: ``drl import FILE`` (keep a DRL set; audited), ``drl list``, and ``local-drl`` (the
site's local DRL table as CSV or XLSX)."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Any


def add_dose(sub: Any) -> None:
    s = sub.add_parser("dose", help="the dose registry: import DRL sets, list them, export local DRLs")
    s.add_argument("action", choices=["drl", "local-drl"])
    s.add_argument("what", nargs="?", choices=["import", "list"], help="drl: import FILE | list")
    s.add_argument("file", nargs="?", help="drl import: the DRL set (YAML or JSON)")
    s.add_argument("--by", default="cli", help="drl import: who imports it (audited); local-drl: facility|scanner")
    s.add_argument("--since", help="local-drl: from this date (YYYY-MM-DD, UTC)")
    s.add_argument("--until", help="local-drl: before this date")
    s.add_argument("--format", choices=["csv", "xlsx"], default="csv")
    s.add_argument("--out", help="local-drl: write here (default: standard output, CSV only)")
    s.set_defaults(func=cmd_dose)


def _day(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC) if text else None


def cmd_dose(args: argparse.Namespace) -> int:
    from radtriage.config import load_settings
    from radtriage.db import audit, open_database
    from radtriage.db import dose as rows
    from radtriage.db.clock import utcnow
    from radtriage.dose.drl import DrlError, load_set

    db = open_database(load_settings(args.config).db_url)
    try:
        if args.action == "drl" and args.what == "list":
            with db.read() as conn:
                for s in rows.list_sets(conn):
                    print(f"{s['name']}  v{s['version']}  {s['sha256'][:12]}  {s['imported_at']:%Y-%m-%d} by {s['imported_by']}")
            return 0
        if args.action == "drl":
            if args.what != "import" or not args.file:
                print("radtriage dose drl import FILE | list", file=sys.stderr)
                return 2
            try:
                drl, sha = load_set(Path(args.file))
            except DrlError as exc:
                print(f"radtriage dose drl import: {exc}", file=sys.stderr)
                return 2
            with db.write() as conn:
                outcome = rows.import_set(conn, drl.name, drl.version, sha, drl.model_dump(mode="json"), args.by,
                                          utcnow())
                if outcome == "imported":
                    audit.record(conn, "drl_imported", actor=args.by, role="admin", client="cli",
                                 detail={"name": drl.name, "version": drl.version, "sha256": sha,
                                         "levels": len(drl.levels)})
            print(f"{drl.label}: {outcome}" + (" (that name and version hold other values: give a new version)"
                                               if outcome == "conflict" else ""))
            return 1 if outcome == "conflict" else 0
        return _local(db, args)
    finally:
        db.dispose()


def _local(db: Any, args: argparse.Namespace) -> int:
    from radtriage.dose.local import csv_text, local_drls, table_xlsx

    by = args.by if args.by in ("facility", "scanner") else "facility"
    table = local_drls(db, by=by, since=_day(args.since), until=_day(args.until))
    period = f"{args.since or 'start'} to {args.until or 'now'}, per {by}"
    if args.format == "xlsx":
        if not args.out:
            print("radtriage dose local-drl --format xlsx needs --out FILE", file=sys.stderr)
            return 2
        Path(args.out).write_bytes(table_xlsx(table, period))
    elif args.out:
        Path(args.out).write_text(csv_text(table, period), encoding="utf-8")
    else:
        sys.stdout.write(csv_text(table, period))
    return 0
