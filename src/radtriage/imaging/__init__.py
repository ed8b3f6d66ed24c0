"""DICOM series to a `Volume` (array + geometry + the header keywords models need), and key images.

`volume.load_series` reads a series (every accepted transfer syntax, enhanced multi-frame,
geometry defects flagged or corrected); `keyimage.render_key_image` writes the PNG of a finding.
"""
