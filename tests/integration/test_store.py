"""`store_instance()` on SQLite and PostgreSQL: durable, idempotent, replacing."""

from __future__ import annotations

import threading
from pathlib import Path

import pydicom
import pytest

from radtriage.db import instances, studies
from radtriage.ingest.parse import InstanceRejected, RejectReason
from radtriage.ingest.store import Origin
from radtriage.service import build_services
from tests.helpers import make_ct_series


@pytest.fixture
def svc(make_settings, db_url):
    s = build_services(make_settings(database_url=db_url))
    yield s
    s.close()


def test_same_bytes_twice_is_stored_once(svc, tmp_path):
    data = make_ct_series(tmp_path / "s", 1)[0].read_bytes()
    first = svc.store.store_instance([data], Origin("import"))
    second = svc.store.store_instance([data], Origin("dimse", "CT1"))
    assert (first.outcome, second.outcome) == ("stored", "duplicate")
    rows = instances.instance_rows(svc.db)
    assert len(rows) == 1 and rows[0]["source"] == "import"
    assert len(list(Path(svc.spool.root).rglob("*.dcm"))) == 1


def test_different_bytes_keep_the_newer_and_record_it(svc, tmp_path):
    path = make_ct_series(tmp_path / "s", 1)[0]
    old = path.read_bytes()
    ds = pydicom.dcmread(path)
    ds.WindowCenter = 77
    ds.save_as(path)
    new = path.read_bytes()
    svc.store.store_instance([old], Origin("dimse", "CT1"))
    result = svc.store.store_instance([new], Origin("dimse", "CT1"))
    assert result.outcome == "replaced"
    rows = instances.instance_rows(svc.db)
    assert len(rows) == 1
    assert Path(rows[0]["path"]).read_bytes() == new
    (rep,) = instances.replacements(svc.db, ds.SOPInstanceUID)
    assert Path(rep["old_path"]).read_bytes() == old  # nothing acknowledged is lost
    assert rep["old_sha256"] != rep["new_sha256"]


def test_concurrent_writers_of_one_instance(svc, tmp_path):
    data = make_ct_series(tmp_path / "s", 1)[0].read_bytes()
    outcomes: list[str] = []
    errors: list[Exception] = []

    def go() -> None:
        try:
            outcomes.append(svc.store.store_instance([data], Origin("dimse", "CT1")).outcome)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(outcomes).count("stored") == 1 and len(outcomes) == 6
    assert len(instances.instance_rows(svc.db)) == 1


def test_many_series_in_parallel(svc, tmp_path):
    series = [make_ct_series(tmp_path / f"s{i}", 5) for i in range(4)]
    errors: list[Exception] = []

    def go(files):
        try:
            for f in files:
                svc.store.store_instance([f.read_bytes()], Origin("dimse", "CT1"))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(s,)) for s in series]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    listed = studies.list_studies(svc.db)
    assert sorted(se["instances"] for st in listed for se in st["series"]) == [5, 5, 5, 5]


def test_rejections_are_counted_and_nothing_indexed(svc, tmp_path):
    data = make_ct_series(tmp_path / "s", 1)[0].read_bytes()
    with pytest.raises(InstanceRejected) as e:
        svc.store.store_instance([data[:-500]], Origin("stow"))
    assert e.value.reason is RejectReason.UNPARSEABLE
    with pytest.raises(InstanceRejected) as e:
        svc.store.store_instance([data], Origin("dimse"), expected_sop_class="1.2.840.10008.5.1.4.1.1.4")
    assert e.value.reason is RejectReason.SOP_MISMATCH
    assert instances.instance_rows(svc.db) == []
    counts = {tuple(s.labels.values()): s.value for m in svc.metrics.registry.collect()
              for s in m.samples if s.name == "radtriage_rejections_total"}
    assert counts[("stow", "unparseable")] == 1 and counts[("dimse", "sop_mismatch")] == 1
