"""Results out (IHE AI Results): each live pipeline result leaves radtriage for the places people read.

DICOM objects to the PACS (`radtriage.exports.dicom`: TID 1500 SR, key images as Secondary Capture with
a Key Object Selection, SEG), HL7 v2 ORU^R01 to the RIS (`radtriage.exports.hl7`) and a FHIR
DiagnosticReport to the EMR (`radtriage.exports.fhir`). Every export is a row of `radtriage.outbox`
(kind ``export``), queued in the transaction that recorded the result; a superseded, withdrawn or
corrected result queues its correction the same way. Only results of pipelines that are live at the
site leave (`radtriage.governance`).
"""

KIND = "export"
