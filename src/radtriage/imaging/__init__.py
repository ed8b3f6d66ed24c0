"""DICOM series to a `Volume` (array + geometry + the header keywords models need), and key images.

`series.load_series` reads a series: `decode` turns pixel data into arrays (every accepted
transfer syntax, rescale, MONOCHROME1), `frames` reads each frame's geometry (enhanced
multi-frame included), `stack` orders the frames into one volume (spacing, orientation and
tilt checked, flagged or corrected); `volume` holds the `Volume` type. `keyimage.render_key_image`
writes the PNG of a finding.
"""
