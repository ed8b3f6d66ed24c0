"""DICOM series to a `Volume` (array + geometry + the header keywords models need)."""
