"""The ``radtriage`` command: serve, import, send, studies, synth, validate, users, audit, models."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from radtriage.config import load_settings
from radtriage.db.accounts import ROLES
from radtriage.logs import setup_logging


def _hostport(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError("expected HOST:PORT")
    return host, int(port)


def _option(value: str) -> tuple[str, object]:
    import yaml

    key, sep, raw = value.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError("expected KEY=VALUE")
    return key, yaml.safe_load(raw)  # numbers, true/false, [lists]


FIRST_ADMIN_PASSWORD_FILE = "first-admin-password"  # in the data directory, mode 0600


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from radtriage.api import create_app
    from radtriage.service import Runtime, build_services, first_admin

    settings = load_settings(args.config)
    setup_logging(settings.log_level)
    services = build_services(settings)
    created = first_admin(services)
    if created is not None:  # the password goes to a private file, never to the output (container logs keep it)
        from radtriage.security import write_private

        where = (settings.data_dir / FIRST_ADMIN_PASSWORD_FILE).resolve()
        write_private(where, created[1] + "\n", replace=True)
        logging.getLogger("radtriage.cli").warning(
            "first start: created user '%s'; its password is in %s (readable by this user only). Log in, add "
            "the real accounts (radtriage users add), then delete that file", created[0], where)
    from radtriage.ingest.listeners import listener_count

    runtime = Runtime(services, listener_processes=listener_count(settings))
    runtime.start()
    tls = " (TLS)" if settings.tls.enabled else ""
    tls += f" ({listener_count(settings)} processes)" if runtime.listeners is not None else ""
    print(
        f"radtriage {settings.environment}: data in {settings.data_dir.resolve()}\n"
        f"  DICOM listener  {settings.dicom_host}:{runtime.scp.port}  AE title {settings.ae_title}{tls}\n"
        f"  peers           "
        + (", ".join(p.ae_title + (f"@{p.host}" if p.host else "") for p in settings.allowed_peers)
           or "this machine only (no allowed_peers configured)")
        + f"\n  HTTP API        http://{settings.http_host}:{settings.http_port}  (/docs, /metrics, /healthz, /readyz, /dicomweb)",
        flush=True,
    )
    try:
        app = create_app(services, runtime)
        # X-Forwarded-For is believed only from the configured proxies (uvicorn alone would trust loopback)
        uvicorn.run(app, host=settings.http_host, port=settings.http_port, log_config=None, access_log=False,
                    proxy_headers=bool(settings.trusted_proxies), forwarded_allow_ips=settings.trusted_proxies or None)
    finally:
        runtime.stop()
        services.close()
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from radtriage.ingest.importer import import_folder
    from radtriage.service import build_services

    settings = load_settings(args.config)
    setup_logging(settings.log_level)
    folder = Path(args.dir)
    if not folder.is_dir():
        print(f"not a folder: {folder}", file=sys.stderr)
        return 2
    services = build_services(settings)
    try:
        report = import_folder(services.store, folder)
    finally:
        services.close()
    print(report.summary())
    for path, why in report.skipped:
        print(f"  skipped  {path}: {why}")
    for path, why in report.rejected:
        print(f"  rejected {path}: {why}")
    return 0 if not report.rejected else 1


def cmd_send(args: argparse.Namespace) -> int:
    from radtriage.ingest.scu import send_files

    setup_logging("WARNING")
    host, port = args.to
    report = send_files([Path(p) for p in args.paths], host, port, args.aet, args.aec)
    print(f"sent {report.sent}, failed {len(report.failed)}")
    for path, why in report.failed:
        print(f"  failed {path}: {why}")
    return 0 if not report.failed else 1


def cmd_studies(args: argparse.Namespace) -> int:
    from radtriage.db import open_database
    from radtriage.db.studies import list_studies

    settings = load_settings(args.config)
    db = open_database(settings.db_url)
    try:
        studies = list_studies(db)
    finally:
        db.dispose()
    if args.json:
        print(json.dumps(studies, indent=2))
        return 0
    print(f"{'study / series UID':66} {'mod':4} {'n':>5} {'state':10} description")
    for st in studies:
        print(f"{st['study_uid']:66} {'':4} {'':>5} {'':10} {st['study_description'] or ''}")
        for se in st["series"]:
            print(
                f"  {se['series_uid']:64} {se['modality'] or '':4} {se['instances']:>5} "
                f"{se['state'] + ('/v' + str(se['version']) if se['version'] > 1 else ''):10} "
                f"{se['series_description'] or ''}"
            )
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from radtriage.ingest.scu import send_files
    from radtriage.synth import synthesize

    setup_logging("WARNING")
    out = Path(args.out)
    try:
        folders = synthesize(args.kind, args.n, args.seed, out, dict(args.opt))
    except TypeError as exc:
        print(f"{args.kind}: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(folders)} synthetic {args.kind} studies under {out}")
    if args.send:
        host, port = args.send
        files = [f for folder in folders for f in sorted(folder.rglob("*.dcm"))]
        report = send_files(files, host, port, args.aet, args.aec)
        print(f"sent {report.sent}, failed {len(report.failed)}")
        for path, why in report.failed:
            print(f"  failed {path}: {why}")
        return 0 if not report.failed else 1
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from radtriage.validation.run import ValidationError, validate

    setup_logging("WARNING")

    def progress(i: int, case) -> None:
        state = f"{case.seconds:.2f} s" if case.error is None else "failed"
        print(f"  [{i}] {case.id}: {state}", file=sys.stderr, flush=True)

    try:
        if bool(args.pipeline) != bool(args.truth) or bool(args.pipeline) == bool(args.model and args.dataset):
            raise ValidationError("give --model and --dataset (a dataset folder), or --pipeline and --truth "
                                  "(a truth CSV of studies stored in radtriage)")
        result = (_validate_stored(args, progress) if args.pipeline else
                  validate(args.model, Path(args.dataset), layout=args.layout, models_dir=Path(args.models_dir),
                           out=Path(args.out) if args.out else None, threads=args.threads, limit=args.limit,
                           rounds=args.bootstrap, threshold=args.threshold, progress=progress,
                           target_sensitivity=args.target_sensitivity))
    except ValidationError as exc:
        print(f"radtriage validate: {exc}", file=sys.stderr)
        return 2
    doc = result.document
    print(f"{doc['model']['id']} {doc['model']['version']} ({doc['task']}) on {doc['n']} cases"
          + (f", {doc['n_failed']} failed" if doc["n_failed"] else ""))
    print(f"  {result.metrics_path}\n  {result.report_path}")
    return 0 if doc["n_failed"] == 0 else 1


def _validate_stored(args: argparse.Namespace, progress):
    """``radtriage validate --pipeline P --truth site.csv``: the pipeline on studies stored in radtriage."""
    from radtriage.db import open_database
    from radtriage.governance.decide import pipelines
    from radtriage.validation.run import ValidationError
    from radtriage.validation.site import validate_site

    settings = load_settings(args.config)
    specs = pipelines(settings)
    if args.pipeline not in specs:
        raise ValidationError(f"no pipeline {args.pipeline!r}; there: {', '.join(sorted(specs))}")
    db = open_database(settings.db_url)
    try:
        return validate_site(db, specs[args.pipeline], settings.inference.models_dir, Path(args.truth),
                             Path(args.out) if args.out else Path(args.truth).parent / f"validation-{args.pipeline}",
                             args.threads, args.bootstrap, args.target_sensitivity, progress)
    finally:
        db.dispose()


def cmd_users(args: argparse.Namespace) -> int:
    import getpass

    from radtriage.db import accounts, audit, open_database
    from radtriage.security import WeakPassword, new_password

    settings = load_settings(args.config)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = open_database(settings.db_url)
    try:
        if args.action == "list":
            for u in accounts.list_users(db):
                state = "disabled" if u["disabled"] else "active"
                print(f"{u['username']:<24} {u['role']:<12} {state:<9} {u['display_name'] or ''}")
            return 0
        if not args.username:
            print("a user name is needed", file=sys.stderr)
            return 2
        if args.action == "add":
            password = None
            if args.role != "service":
                password = (getpass.getpass("password (12+ characters; empty: generate one): ")
                            if sys.stdin.isatty() and not args.generate else "") or new_password()
            accounts.add_user(db, args.username, args.role, password, args.name)
            audit.log(db, "user_added", actor="cli", detail={"username": args.username, "role": args.role})
            if password and (args.generate or not sys.stdin.isatty()):
                print(f"password for {args.username}: {password}")
            print(f"added {args.username} ({args.role})")
        elif args.action == "disable":
            accounts.set_disabled(db, args.username)
            audit.log(db, "user_disabled", actor="cli", detail={"username": args.username})
            print(f"disabled {args.username}: sessions ended, tokens revoked")
        elif args.action == "token":
            token = accounts.issue_token(db, args.username, args.token_name, args.days)
            audit.log(db, "token_issued", actor="cli", detail={"username": args.username, "name": args.token_name})
            print(token)
    except (accounts.AccountError, WeakPassword) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        db.dispose()
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    import socket

    from radtriage.db import audit, open_database

    try:
        since = audit.parse_time(args.since) if args.since else None
        until = audit.parse_time(args.until) if args.until else None
    except ValueError as exc:
        print(f"radtriage audit export: {exc} (expected ISO 8601, or 30m, 24h, 7d)", file=sys.stderr)
        return 2
    db = open_database(load_settings(args.config).db_url)
    try:
        audit.log(db, "audit_exported", actor="cli", detail={
            "format": args.format, "since": since and since.isoformat(), "until": until and until.isoformat()})
        rows = audit.stream(db, since, until)
        lines = audit.csv_lines(rows) if args.format == "csv" else audit.syslog_lines(rows, socket.gethostname())
        sys.stdout.writelines(lines)
    finally:
        db.dispose()
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """``radtriage models list | promote | demote | suspend``: each pipeline's state at this site, and decisions."""
    from functools import partial

    from radtriage.alerts.withdraw import withdraw_pipeline
    from radtriage.db import open_database
    from radtriage.governance.decide import DecisionRefused, decide, overview

    settings = load_settings(args.config)
    db = open_database(settings.db_url)
    try:
        if args.action == "range":
            return _models_range(args, settings)
        if args.action == "list":
            for p in overview(db, settings):
                print(f"{p['pipeline_id']:<14} {p['state']:<9} {p['model_id']} {p['model_version']}  {p['reason']}")
            return 0
        if not args.pipeline or not args.reason or not args.by:
            print(f"radtriage models {args.action}: PIPELINE, --reason and --by are needed", file=sys.stderr)
            return 2
        evidence = None
        if args.action == "promote":
            if not args.evidence:
                print("radtriage models promote: --evidence metrics.json (or shadow) is needed", file=sys.stderr)
                return 2
            evidence = "shadow" if args.evidence == "shadow" else json.loads(
                Path(args.evidence).read_text(encoding="utf-8"))
        d = decide(db, settings, args.pipeline, args.action, args.reason, args.by, client="cli",
                   evidence=evidence, carry_over=args.carry_over, withdraw=partial(withdraw_pipeline, db))
        print(f"{d['pipeline_id']}: {d['state']} ({d['action']} by {d['decided_by']}, decision {d['id']})")
        return 0
    except DecisionRefused as exc:
        print(f"refused: {args.action} {exc.pipeline_id}:", *(f"  - {p}" for p in exc.problems), sep="\n",
              file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"radtriage models {args.action}: {exc}", file=sys.stderr)
        return 2
    finally:
        db.dispose()


def _models_range(args: argparse.Namespace, settings) -> int:
    """``radtriage models range PIPELINE --dataset DIR [--write]``: the validated input range a dataset supports."""
    from radtriage.governance.decide import pipelines
    from radtriage.validation.ranges import measure_range, write_range

    specs = pipelines(settings)
    if args.pipeline not in specs or not args.dataset:
        print(f"radtriage models range: a PIPELINE ({', '.join(sorted(specs))}) and --dataset DIR are needed",
              file=sys.stderr)
        return 2
    model_dir = Path(settings.inference.models_dir) / specs[args.pipeline].model
    card, vr, spans = measure_range(model_dir, Path(args.dataset), args.limit, args.margin)
    declared = card.validated_range.checks if card.validated_range else {}
    for name, r in vr.checks.items():
        lo, hi, n = spans[name]
        print(f"{name:<20} observed {lo:10.3f} .. {hi:10.3f} (n={n})  -> [{r.min:g}, {r.max:g}]"
              f"   card now: {declared[name] if name in declared else '-'}")
    missing = [n for n in declared if n not in vr.checks]
    if missing:
        print("not measured on this dataset (kept out of the range): " + ", ".join(missing), file=sys.stderr)
    if args.write:
        print(f"written: {write_range(model_dir, card, vr)}")
    return 0


def _positive_int(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError("expected a positive whole number")
    return int(value)


def _add_synth(sub: Any) -> None:
    from radtriage.synth.run import GENERATORS

    s = sub.add_parser("synth", help="write synthetic studies with ground truth (and send them)")
    s.add_argument("kind", choices=sorted(GENERATORS))
    s.add_argument("--n", type=int, default=1)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True)
    s.add_argument("--opt", type=_option, action="append", default=[], metavar="KEY=VALUE",
                   help="generator option, e.g. matrix=128 or positive=true (repeatable)")
    s.add_argument("--send", type=_hostport, metavar="HOST:PORT", help="also C-STORE them, as a scanner")
    s.add_argument("--aet", default="SYNTH_CT", help="calling AE title when sending")
    s.add_argument("--aec", default="RADTRIAGE", help="called AE title when sending")
    s.set_defaults(func=cmd_synth)


def _add_validate(sub: Any) -> None:
    s = sub.add_parser("validate", help="run a model over a labelled dataset; write metrics.json and report.html")
    s.add_argument("--model", metavar="ID_OR_PATH", help="model id under --models-dir, or a model folder")
    s.add_argument("--dataset", metavar="DIR", help="labelled dataset (radtriage synth output or a public layout)")
    s.add_argument("--pipeline", help="or: run this pipeline as the service does on the stored studies of --truth")
    s.add_argument("--truth", metavar="CSV", help="with --pipeline: accession -> truth (docs/operations.md)")
    s.add_argument("--target-sensitivity", type=float, default=0.95, help="of the site's operating point")
    s.add_argument("--layout", help="dataset layout: synthetic, rsna-ich, luna16, rsna-bone-age (default: detected)")
    s.add_argument("--models-dir", default="models", metavar="DIR")
    s.add_argument("--out", metavar="DIR", help="output folder (default DATASET/validation-MODEL_ID)")
    s.add_argument("--threads", type=_positive_int, default=2, help="ONNX Runtime threads")
    s.add_argument("--limit", type=_positive_int, metavar="N", help="validate at most N cases")
    s.add_argument("--bootstrap", type=int, default=1000, metavar="ROUNDS", help="bootstrap resamples for 95%% CIs")
    s.add_argument("--threshold", type=float, help="operating threshold (default: the model card's)")
    s.set_defaults(func=cmd_validate)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="radtriage", description=__doc__)
    p.add_argument("--config", help="settings file (default configs/radtriage.yaml)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the DICOM listener, assembly and the HTTP API")
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("import", help="store every DICOM file under DIR (folders, DICOMDIR media)")
    s.add_argument("dir")
    s.set_defaults(func=cmd_import)

    s = sub.add_parser("send", help="send DICOM files to a C-STORE SCP")
    s.add_argument("paths", nargs="+")
    s.add_argument("--to", required=True, type=_hostport, metavar="HOST:PORT")
    s.add_argument("--aet", default="RADTRIAGE_SCU", help="calling AE title")
    s.add_argument("--aec", default="RADTRIAGE", help="called AE title")
    s.set_defaults(func=cmd_send)

    _add_synth(sub)
    _add_validate(sub)
    from radtriage.dose.cli import add_dose

    add_dose(sub)

    s = sub.add_parser("users", help="manage accounts: add, list, disable, token")
    s.add_argument("action", choices=["add", "list", "disable", "token"])
    s.add_argument("username", nargs="?")
    s.add_argument("--role", choices=list(ROLES),
                   default="radiologist")
    s.add_argument("--name", help="display name")
    s.add_argument("--generate", action="store_true", help="generate the password and print it once")
    s.add_argument("--token-name", default="api", help="label of the token (token)")
    s.add_argument("--days", type=float, help="token lifetime in days (token; default: until revoked)")
    s.set_defaults(func=cmd_users)

    s = sub.add_parser("models", help="pipelines' states at this site: list, promote (on evidence), demote, suspend; "
                                      "range (a model's validated input range measured on a dataset)")
    s.add_argument("action", choices=["list", "promote", "demote", "suspend", "range"])
    s.add_argument("pipeline", nargs="?", help="pipeline id (pipelines/*.yaml)")
    s.add_argument("--evidence", metavar="METRICS_JSON",
                   help="promote: the metrics.json of radtriage validate, or 'shadow' (the silent trial's reads)")
    s.add_argument("--reason", help="why (kept with the decision and in the audit trail)")
    s.add_argument("--by", metavar="ADMIN", help="the admin account taking the decision")
    s.add_argument("--carry-over", action="store_true",
                   help="promote: accept evidence of another version of the model or another threshold")
    s.add_argument("--dataset", metavar="DIR", help="range: a labelled dataset of this site (any validate layout)")
    s.add_argument("--margin", type=float, default=0.1, help="range: widen the observed span by this share")
    s.add_argument("--limit", type=_positive_int, metavar="N", help="range: measure at most N cases")
    s.add_argument("--write", action="store_true", help="range: write the measured range into the model card")
    s.set_defaults(func=cmd_models)

    s = sub.add_parser("studies", help="list stored studies and series")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_studies)

    s = sub.add_parser("audit", help="export the audit trail (CSV, or RFC 5424 syslog lines with the ATNA fields)")
    s.add_argument("action", choices=["export"])
    s.add_argument("--format", choices=["csv", "syslog"], default="csv")
    s.add_argument("--since", help="from this time: ISO 8601 (UTC when no offset) or 30m, 24h, 7d back")
    s.add_argument("--until", help="before this time (same forms)")
    s.set_defaults(func=cmd_audit)
    return p


def main(argv: list[str] | None = None) -> int:
    from radtriage.service import ProductionConfigError
    from radtriage.serving.cluster import ClusterError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ProductionConfigError, ClusterError) as exc:  # what to change, said once, without a traceback
        print(f"radtriage: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
