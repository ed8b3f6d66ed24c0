"""DICOMweb reads (QIDO-RS, WADO-RS) against a running server, with dicomweb-client as the viewer would."""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path

import numpy as np
import pydicom
import pytest
import requests
import uvicorn
from dicomweb_client.api import DICOMwebClient
from pydicom.data import get_testdata_file
from pydicom.encaps import generate_frames
from sqlalchemy import update

from radtriage.api import create_app
from radtriage.config import load_settings
from radtriage.db import accounts, audit, instances
from radtriage.db.tables import instances as instances_table
from radtriage.ingest.importer import import_folder
from radtriage.service import build_services
from tests.helpers import make_ct_series

J2K_MULTIFRAME = "emri_small_jpeg_2k_lossless.dcm"  # pydicom-data: Enhanced MR, 10 frames, JPEG 2000 lossless
ROLES = ("radiologist", "admin", "service", "stroke")


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request):
    """The index on SQLite (in the data directory) and on a PostgreSQL database of this module's own."""
    if request.param == "sqlite":
        yield None
        return
    import psycopg

    server, name = request.getfixturevalue("postgres_server"), f"rt_dw_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{server} dbname=test", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://127.0.0.1:5432/{name}"
    with psycopg.connect(f"{server} dbname=test", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def env(tmp_path_factory, database_url):
    """A server on 127.0.0.1 with two synthetic CT studies and a real JPEG 2000 multi-frame MR, and tokens."""
    tmp = tmp_path_factory.mktemp("dicomweb")
    settings = load_settings(config_file=tmp / "absent.yaml", data_dir=tmp / "data", dicom_host="127.0.0.1",
                             dicom_port=0, min_free_bytes=0, inference={"enabled": False}, alerting_file=None,
                             database_url=database_url)
    services = build_services(settings)
    src = tmp / "src"
    a = make_ct_series(src / "a", 3, PatientID="PID-A", PatientName="Doe^Jane", AccessionNumber="ACC1001",
                       StudyDate="20240105")
    b = make_ct_series(src / "b", 2, PatientID="PID-B", PatientName="Roe^Richard", AccessionNumber="ACC2002",
                       StudyDate="20240610")
    shutil.copy(get_testdata_file(J2K_MULTIFRAME), src / "mr.dcm")
    assert import_folder(services.store, src).stored == 6
    tokens = {}
    for role in ROLES:
        accounts.add_user(services.db, f"{role}1", role, "correct horse battery" if role != "service" else None)
        tokens[role] = accounts.issue_token(services.db, f"{role}1")
    server = uvicorn.Server(uvicorn.Config(create_app(services), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    port = server.servers[0].sockets[0].getsockname()[1]
    env = {"url": f"http://127.0.0.1:{port}/dicomweb", "services": services, "tokens": tokens,
           "a": [pydicom.dcmread(p) for p in a], "b": [pydicom.dcmread(p) for p in b], "a_files": a,
           "mr": pydicom.dcmread(src / "mr.dcm"), "mr_file": src / "mr.dcm"}
    yield env
    server.should_exit = True
    thread.join(10)
    services.close()


class PortKeepingSession(requests.Session):
    """dicomweb-client 0.61 sets ``Host`` to the host name without its port on unstreamed GETs, so a server on
    another port than 80 would build its URLs (RetrieveURL, BulkDataURI) without it: let requests set ``Host``."""

    def request(self, method, url, *args, headers=None, **kwargs):
        headers = {k: v for k, v in (headers or {}).items() if k.lower() != "host"}
        return super().request(method, url, *args, headers=headers, **kwargs)


def client(env, role="radiologist") -> DICOMwebClient:
    return DICOMwebClient(env["url"], session=PortKeepingSession(),
                          headers={"Authorization": f"Bearer {env['tokens'][role]}"})


def get(env, path, role="radiologist", params=None, accept=None) -> requests.Response:
    headers = {"Authorization": f"Bearer {env['tokens'][role]}"} if role else {}
    if accept:
        headers["Accept"] = accept
    return requests.get(env["url"] + path, params=params, headers=headers, timeout=20)


def uids(results, tag="0020000D") -> set[str]:
    return {r[tag]["Value"][0] for r in results}


def test_qido_searches_match_like_a_viewer_asks(env):
    c = client(env)
    a, b, mr = env["a"][0], env["b"][0], env["mr"]
    everything = c.search_for_studies()
    assert uids(everything) == {a.StudyInstanceUID, b.StudyInstanceUID, mr.StudyInstanceUID}
    study_a = next(r for r in everything if r["0020000D"]["Value"][0] == a.StudyInstanceUID)
    assert study_a["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]}
    assert study_a["00080061"]["Value"] == ["CT"]
    assert study_a["00201206"]["Value"] == [1] and study_a["00201208"]["Value"] == [3]
    assert study_a["00081190"]["Value"][0].endswith(f"/dicomweb/studies/{a.StudyInstanceUID}")

    def studies(**filters):
        return uids(c.search_for_studies(search_filters=filters))

    assert studies(PatientID="PID-A") == {a.StudyInstanceUID}
    assert studies(AccessionNumber="ACC2*") == {b.StudyInstanceUID}
    assert studies(AccessionNumber="ACC?00?") == {a.StudyInstanceUID, b.StudyInstanceUID}
    assert studies(PatientName="doe*") == {a.StudyInstanceUID}  # names ignore case
    assert studies(PatientName="*RICH*") == {b.StudyInstanceUID}
    assert uids(c.search_for_studies(fuzzymatching=True, search_filters={"PatientName": "jan"})) == {
        a.StudyInstanceUID}
    assert studies(StudyDate="20240101-20240301") == {a.StudyInstanceUID}
    assert studies(StudyDate="20240601-") == {b.StudyInstanceUID}
    assert studies(StudyDate="-19991231") == set()
    assert studies(StudyDate="-20001231") == {mr.StudyInstanceUID}  # the MR is of 2000-01-01
    assert studies(StudyDate="20240610") == {b.StudyInstanceUID}
    assert studies(ModalitiesInStudy="MR") == {mr.StudyInstanceUID}
    assert studies(StudyInstanceUID=f"{a.StudyInstanceUID},{mr.StudyInstanceUID}") == {
        a.StudyInstanceUID, mr.StudyInstanceUID}
    assert studies(**{"00100020": "PID-B"}) == {b.StudyInstanceUID}  # a tag for a keyword
    assert c.search_for_studies(search_filters={"PatientID": "nobody"}) == []

    # paging: limit and offset walk the same order; get_remaining pages to the end
    first, second = c.search_for_studies(limit=2), c.search_for_studies(limit=2, offset=2)
    assert len(first) == 2 and len(second) == 1 and uids(first + second) == uids(everything)
    r = get(env, "/studies", params={"limit": 1})
    assert r.headers["content-type"].startswith("application/dicom+json")
    assert "additional results" in r.headers["warning"]
    assert len(c.search_for_studies(limit=1, get_remaining=True)) == 3
    r = get(env, "/studies", params={"ReferringPhysicianName": "X", "Größe": "1"})
    assert r.status_code == 200 and len(r.json()) == 3  # keys the index cannot match are ignored, and said so
    assert "not supported: ReferringPhysicianName" in r.headers["warning"] and "Gr??e" in r.headers["warning"]

    # includefield adds what the index holds; all gives every attribute of the level
    one = c.search_for_studies(search_filters={"PatientID": "PID-A"}, fields=["IssuerOfPatientID"])[0]
    assert "00100021" in one and "00100021" not in study_a
    assert "00080020" in c.search_for_studies(fields=["all"])[0]


def test_qido_series_and_instances(env):
    c = client(env)
    a, mr = env["a"][0], env["mr"]
    series = c.search_for_series(a.StudyInstanceUID)
    assert [s["0020000E"]["Value"][0] for s in series] == [a.SeriesInstanceUID]
    assert series[0]["00080060"]["Value"] == ["CT"] and series[0]["00201209"]["Value"] == [3]
    assert uids(c.search_for_series(search_filters={"Modality": "MR"}), "0020000E") == {mr.SeriesInstanceUID}
    assert uids(c.search_for_series(search_filters={"PatientID": "PID-B"}), "0020000E") == {
        env["b"][0].SeriesInstanceUID}
    found = c.search_for_instances(a.StudyInstanceUID, a.SeriesInstanceUID)
    assert [i["00200013"]["Value"][0] for i in found] == [1, 2, 3]
    assert uids(found, "00080018") == {ds.SOPInstanceUID for ds in env["a"]}
    sop = env["a"][1].SOPInstanceUID
    assert uids(c.search_for_instances(search_filters={"SOPInstanceUID": sop}), "00080018") == {sop}
    assert len(c.search_for_instances(a.StudyInstanceUID)) == 3
    assert c.search_for_instances(a.StudyInstanceUID, search_filters={"InstanceNumber": "7"}) == []


def multipart_parts(r: requests.Response) -> list[tuple[str, str | None, bytes]]:
    """The parts of a multipart/related answer: (type, transfer syntax, bytes), parsed by the standard library."""
    msg = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {r.headers['content-type']}\r\n\r\n".encode() + r.content)
    return [(p.get_content_type(), p.get_param("transfer-syntax"), p.get_payload(decode=True))
            for p in msg.iter_parts()]


def test_wado_retrieves_the_stored_files(env):
    c = client(env, "service")
    a0 = env["a"][0]
    ds = c.retrieve_instance(a0.StudyInstanceUID, a0.SeriesInstanceUID, a0.SOPInstanceUID)
    assert ds.SOPInstanceUID == a0.SOPInstanceUID and ds.PixelData == a0.PixelData
    r = get(env, f"/studies/{a0.StudyInstanceUID}/series/{a0.SeriesInstanceUID}/instances/{a0.SOPInstanceUID}",
            accept='multipart/related; type="application/dicom"')
    ((ctype, syntax, body),) = multipart_parts(r)
    assert (ctype, syntax) == ("application/dicom", "1.2.840.10008.1.2.1")
    assert body == env["a_files"][0].read_bytes()  # byte for byte what was stored
    r = get(env, f"/studies/{a0.StudyInstanceUID}")
    assert "content-length" not in r.headers and len(multipart_parts(r)) == 3  # streamed, file by file
    got = c.retrieve_series(a0.StudyInstanceUID, a0.SeriesInstanceUID)
    assert [d.SOPInstanceUID for d in got] == [d.SOPInstanceUID for d in env["a"]]
    mr = env["mr"]
    (whole,) = c.retrieve_study(mr.StudyInstanceUID)
    assert whole.file_meta.TransferSyntaxUID == mr.file_meta.TransferSyntaxUID
    assert whole.PixelData == mr.PixelData
    # a transfer syntax other than the stored one is not made up
    r = get(env, f"/studies/{mr.StudyInstanceUID}",
            accept='multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1')
    assert r.status_code == 406 and r.headers["content-type"] == "application/problem+json"
    assert "1.2.840.10008.1.2.4.90" in r.json()["detail"] and "none is transcoded" in r.json()["detail"]


def test_wado_metadata_has_pixel_data_as_bulk_data(env):
    c = client(env)
    mr = env["mr"]
    meta = c.retrieve_instance_metadata(mr.StudyInstanceUID, mr.SeriesInstanceUID, mr.SOPInstanceUID)
    assert meta["00080018"]["Value"] == [mr.SOPInstanceUID] and meta["00280008"]["Value"] == [10]
    assert set(meta["7FE00010"]) == {"vr", "BulkDataURI"}
    assert meta["00083002"]["Value"] == [mr.file_meta.TransferSyntaxUID]
    parsed = pydicom.Dataset.from_json({k: v for k, v in meta.items() if k != "7FE00010"})
    assert parsed.PatientName == mr.PatientName and parsed.Rows == mr.Rows
    frames = c.retrieve_bulkdata(meta["7FE00010"]["BulkDataURI"])
    assert frames == list(generate_frames(mr.PixelData, number_of_frames=10))
    a0 = env["a"][0]
    series = c.retrieve_series_metadata(a0.StudyInstanceUID, a0.SeriesInstanceUID)
    assert [m["00080018"]["Value"][0] for m in series] == [d.SOPInstanceUID for d in env["a"]]
    assert series[0]["7FE00010"]["vr"] == "OW"
    assert len(c.retrieve_study_metadata(a0.StudyInstanceUID)) == 3


def test_wado_frames_native_and_compressed(env):
    c = client(env)
    a0, mr = env["a"][0], env["mr"]
    (frame,) = c.retrieve_instance_frames(a0.StudyInstanceUID, a0.SeriesInstanceUID, a0.SOPInstanceUID, [1],
                                          media_types=("application/octet-stream",))
    assert np.array_equal(np.frombuffer(frame, dtype=a0.pixel_array.dtype).reshape(a0.Rows, a0.Columns),
                          a0.pixel_array)
    # compressed: each frame as stored (JPEG 2000), its transfer syntax in the part header
    path = f"/studies/{mr.StudyInstanceUID}/series/{mr.SeriesInstanceUID}/instances/{mr.SOPInstanceUID}"
    got = c.retrieve_instance_frames(mr.StudyInstanceUID, mr.SeriesInstanceUID, mr.SOPInstanceUID, [3, 1, 10])
    from pydicom.pixels import get_decoder  # decode the returned codestreams as a viewer would
    from pydicom.uid import JPEG2000Lossless

    decoder = get_decoder(JPEG2000Lossless)
    for data, number in zip(got, [3, 1, 10], strict=True):
        frame_ds = pydicom.Dataset()
        for kw in ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "BitsStored", "PixelRepresentation",
                   "PhotometricInterpretation"):
            setattr(frame_ds, kw, mr[kw].value)
        frame_ds.NumberOfFrames = 1
        frame_ds.file_meta = pydicom.dataset.FileMetaDataset()
        frame_ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
        from pydicom.encaps import encapsulate

        frame_ds.PixelData = encapsulate([data])
        arr, _ = decoder.as_array(frame_ds)
        assert np.array_equal(arr, mr.pixel_array[number - 1])
    parts = multipart_parts(get(env, path + "/frames/2", accept='multipart/related; type="image/jp2"'))
    assert parts[0][:2] == ("image/jp2", "1.2.840.10008.1.2.4.90")
    # uncompressed frames only: 406 with a problem detail that says why (frames are not decompressed)
    r = get(env, path + "/frames/1", accept='multipart/related; type="application/octet-stream"')
    assert r.status_code == 406 and "not decompressed" in r.json()["detail"]
    assert get(env, path + "/frames/11").status_code == 404
    assert get(env, path + "/frames/0").status_code == 422
    assert get(env, path + "/frames/1,x").status_code == 422


def test_roles_problems_paths_and_audit(env):
    a0 = env["a"][0]
    inst = f"/studies/{a0.StudyInstanceUID}/series/{a0.SeriesInstanceUID}/instances/{a0.SOPInstanceUID}"
    for path in ("/studies", inst, inst + "/metadata", inst + "/frames/1"):
        assert get(env, path, role=None).status_code == 401
        r = get(env, path, role="stroke")
        assert r.status_code == 403 and r.json()["title"] == "Forbidden"
        for role in ("radiologist", "admin", "service"):
            assert get(env, path, role=role).status_code == 200, (role, path)
    assert get(env, "/studies/1.2.abc").status_code == 422
    assert get(env, "/studies/1.2.3.4/series/x.y/metadata").status_code == 422
    r = get(env, "/studies", params={"StudyInstanceUID": "1.2.x"})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    for path in ("/studies/1.2.3.4", "/studies/1.2.3.4/metadata", "/studies/1.2.3.4/series",
                 f"/studies/{a0.StudyInstanceUID}/series/1.2.3.4"):
        r = get(env, path)
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json", path
    assert get(env, "/studies", accept="application/dicom+xml").status_code == 406
    assert get(env, inst, accept="application/json").status_code == 406

    # the audit: the study UID in the row, the matching keys by name, never their values
    db = env["services"].db
    assert get(env, "/studies", role="service", params={"PatientName": "Doe*"}).status_code == 200
    _, rows = audit.entries(db, study_uid=a0.StudyInstanceUID, limit=1000)
    actions = {(r["action"], r["actor"]) for r in rows}
    assert {("dicomweb_retrieved", "service1"), ("dicomweb_metadata", "admin1"), ("dicomweb_frames", "radiologist1"),
            ("dicomweb_searched", "service1")} <= actions
    assert all(r["study_uid"] == a0.StudyInstanceUID for r in rows if r["action"] == "dicomweb_retrieved")
    searched = next(r for r in rows if r["action"] == "dicomweb_searched" and r["actor"] == "service1")
    assert searched["detail"]["keys"] == ["PatientName"] and "Doe" not in str(searched["detail"])

    # only files under the spool are served, whatever the index says
    stored = Path(next(r["path"] for r in instances.instance_rows(db) if r["sop_instance_uid"] == a0.SOPInstanceUID))
    escape = stored.parent / ".." / ".." / ".." / ".." / "src" / "mr.dcm"  # a real file, outside the spool
    assert escape.resolve() == env["mr_file"].resolve()
    row = instances_table.c.sop_instance_uid == a0.SOPInstanceUID
    with db.write() as conn:
        conn.execute(update(instances_table).where(row).values(path=str(escape)))
    try:
        assert get(env, inst).status_code == 404
        assert get(env, f"/studies/{a0.StudyInstanceUID}").status_code == 404
    finally:
        with db.write() as conn:
            conn.execute(update(instances_table).where(row).values(path=str(stored)))
    assert get(env, inst).status_code == 200
