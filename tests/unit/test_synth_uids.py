"""Synthetic studies never share identifiers: UIDs and accession numbers are unique per kind, seed and index.

Issue 12 item 5: ``ct-head`` and ``ct-chest`` made with the same seed shared 74 SOP Instance UIDs, and
``cta-head`` and ``ct-chest`` a Study Instance UID and an accession number, because every kind drew its
identifiers from the same random stream. The identifiers now come from (kind, seed, index) alone; the
pixel stream is untouched (the same draws are made), so images and truth stay as they were.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pydicom
import pytest

from radtriage.synth import GENERATORS, synthesize

SMALL = {"ct-head": {"matrix": 64}, "cta-head": {"matrix": 64}, "ct-chest": {"matrix": 64}, "xr-hand": {},
         "ct-rdsr": {}}
UID_KEYWORDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID")


def _headers(folder: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(folder.rglob("*.dcm"))]


@pytest.fixture(scope="module")
def same_seed(tmp_path_factory) -> dict[str, list[pydicom.Dataset]]:
    """Every kind made with one seed (the repro of item 5), small matrices."""
    root = tmp_path_factory.mktemp("synth")
    return {kind: _headers(synthesize(kind, 1, 5, root / kind, SMALL[kind])[0]) for kind in GENERATORS}


def test_kinds_made_with_one_seed_share_no_uid_accession_or_patient(same_seed):
    owners: dict[tuple[str, str], set[str]] = {}
    for kind, headers in same_seed.items():
        for ds in headers:
            for kw in UID_KEYWORDS:
                if kw in ds:
                    owners.setdefault((kw, str(ds.get(kw))), set()).add(kind)
            owners.setdefault(("AccessionNumber", str(ds.AccessionNumber)), set()).add(kind)
            owners.setdefault(("PatientID", str(ds.PatientID)), set()).add(kind)
    shared = {key: sorted(kinds) for key, kinds in owners.items() if len(kinds) > 1}
    assert not shared, f"{len(shared)} identifiers shared across kinds, e.g. {list(shared.items())[:3]}"


def test_a_study_has_one_identity_and_distinct_instance_uids(same_seed):
    from radtriage.synth.run import study_identity

    for kind, headers in same_seed.items():
        ids = study_identity(kind, 5, 0)
        assert {str(ds.StudyInstanceUID) for ds in headers} == {ids.study_uid}, kind
        assert {str(ds.AccessionNumber) for ds in headers} == {ids.accession}, kind
        assert {str(ds.PatientID) for ds in headers} == {ids.patient_id}, kind
        sops = Counter(str(ds.SOPInstanceUID) for ds in headers)
        assert sops.most_common(1)[0][1] == 1, kind
        series = {str(ds.SeriesInstanceUID) for ds in headers}
        assert len(series) == len({int(ds.SeriesNumber) for ds in headers}), kind
        assert not series & set(sops) and ids.study_uid not in set(sops) | series, kind
        for ds in headers:
            assert len(str(ds.AccessionNumber)) <= 16 and len(str(ds.SOPInstanceUID)) <= 64


def test_identities_unique_over_all_kinds_a_range_of_seeds_and_indices():
    from radtriage.synth.run import study_identity

    seen: dict[str, tuple[str, int, int]] = {}
    for kind in GENERATORS:
        for seed in list(range(60)) + [2**31 - 1, 2**40, 2**63 - 1]:
            for index in range(12):
                ids = study_identity(kind, seed, index)
                assert len(ids.accession) <= 16 and len(ids.patient_id) <= 64
                for value in (ids.study_uid, ids.accession, ids.patient_id,
                              *(ids.uid(n) for n in range(3))):
                    assert len(value) <= 64
                    assert value not in seen, (value, seen.get(value), (kind, seed, index))
                    seen[value] = (kind, seed, index)
    # the same (kind, seed, index) gives the same identity: a study can be made again
    assert study_identity("ct-head", 3, 1) == study_identity("ct-head", 3, 1)

