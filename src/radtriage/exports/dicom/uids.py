"""Deterministic UIDs and numbers of the DICOM objects of one result (`radtriage.exports.model.object_uid`).

A series per kind of object stays the same across a result's revisions (a correction is a new instance in
the same series); an instance's UID changes with the revision. Resending a revision builds the same UIDs.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.uid import UID

from radtriage.exports.model import ExportedResult, object_uid

SERIES_NUMBERS = {"sr": 9901, "sc": 9902, "kos": 9903, "seg": 9904, "rejection": 9905}


@dataclass(frozen=True)
class Uids:
    exported: ExportedResult
    site_key: bytes = b""

    def series(self, kind: str, result_id: int | None = None) -> UID:
        rid = self.exported.result_id if result_id is None else result_id
        return object_uid(rid, f"series-{kind}", 0, self.site_key)

    def sop(self, kind: str, revision: int | None = None, result_id: int | None = None) -> UID:
        rid = self.exported.result_id if result_id is None else result_id
        rev = self.exported.revision if revision is None else revision
        return object_uid(rid, kind, rev, self.site_key)

    def tracking(self, i: int | None) -> UID:
        """Finding ``i``'s tracking UID (from 0), the same in every revision, SR and SEG of the result (and its
        FHIR BodyStructure); None: the study-level group's (absent, a study's Lung-RADS, a withdrawal)."""
        return object_uid(self.exported.result_id, "track-study" if i is None else f"track-{i}", 0, self.site_key)

    def device(self) -> UID:
        """The observing device: one per pipeline at a site."""
        return object_uid(0, f"device/{self.exported.pipeline_id}", 0, self.site_key)

    @staticmethod
    def series_number(kind: str) -> int:
        return SERIES_NUMBERS[kind]
