"""Key images of large radiographs: reduced by area to at most `keyimage.MAX_SIZE`, the box where the finding is."""

from __future__ import annotations

import numpy as np
from PIL import Image

from radtriage.imaging import keyimage
from radtriage.imaging.volume import Volume


def _red(img: np.ndarray) -> np.ndarray:
    return (img[..., 0] > 200) & (img[..., 1] < 100) & (img[..., 2] < 100)


def test_a_3000_by_2500_radiograph_is_reduced_and_its_box_lands_where_the_finding_is(tmp_path):
    rows, cols = 3000, 2500
    arr = np.full((rows, cols), 0.5, np.float32)
    arr[:, :1000] = np.indices((rows, 1000)).sum(axis=0) % 2  # a one-pixel checkerboard on the left
    box = ((1200, 1800), (1500, 2100))  # rows, columns of the finding
    path = keyimage.render_key_image(Volume(arr, (0.14, 0.14)), box=box, window=(0.5, 1.0), label="bone age",
                                     path=tmp_path / "big.png")
    width, height = round(cols * keyimage.MAX_SIZE / rows), keyimage.MAX_SIZE
    with Image.open(path) as png:
        assert png.size == (width, height + keyimage.banner_height(width))  # 853 x (1024 + band)
        img = np.asarray(png.convert("RGB"))[:height]
    ys, xs = np.nonzero(_red(img))
    f = height / rows  # display pixels per radiograph pixel, both ways (square pixels)
    assert abs(ys.min() - box[0][0] * f) <= 3 and abs(ys.max() - box[0][1] * f) <= 3
    assert abs(xs.min() - box[1][0] * f) <= 3 and abs(xs.max() - box[1][1] * f) <= 3
    inside = img[int(box[0][0] * f) + 4:int(box[0][1] * f) - 4, int(box[1][0] * f) + 4:int(box[1][1] * f) - 4]
    assert not _red(inside).any()
    # reduced by area: the checkerboard averages to mid-grey (sampling single pixels would give black and white)
    grey = img[50:-50, 20:int(1000 * f) - 20, 0]
    assert 80 <= grey.min() and grey.max() <= 175


def test_a_ct_slice_and_a_small_radiograph_are_still_enlarged(tmp_path):
    assert keyimage.display_size(512, 512) == (512, 512)
    assert keyimage.display_size(64, 64) == (512, 512)  # x8
    assert keyimage.display_size(300, 200) == (400, 600)
    assert keyimage.display_size(2000, 1000, max_size=1000) == (500, 1000)
    assert keyimage.display_size(1000, 1000, aspect=2.0, max_size=1000) == (500, 1000)  # rows of 2 mm, columns of 1
