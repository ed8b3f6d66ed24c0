"""Authorised shares of one study: a QR link a patient carries across a border (Hong Kong / Greater Bay Area).

A clinician issues a share (`radtriage.api.shares`); the shared copy of the study (its instances marked as a
shared copy, the signed report, a manifest) is encrypted with a random key that travels only in the link
(`crypto`, `store`); its holder opens it with the link and a passcode (`access`), reads the report and the
images on a phone (`render`), downloads a DICOM zip with a DICOMDIR (`dicomdir`), or a receiving hospital
pulls it by WADO-RS with its token. docs/sharing.md says why each choice was made.
"""
