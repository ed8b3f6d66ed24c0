"""`serving.transport`: a series as bytes for the object store, key images back as bytes (no Ray needed)."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest

from radtriage.imaging.series import load_series
from radtriage.inference.runner import TaskRunner
from radtriage.pipelines import load_pipeline
from radtriage.serving.app import run_shipped
from radtriage.serving.transport import PackedSeries, compress_level, land_key_images, pack_series, unpack_series
from tests.helpers import make_ct_series

REPO = Path(__file__).resolve().parents[2]


def test_a_packed_series_reads_back_as_the_files_do(tmp_path):
    paths = sorted(make_ct_series(tmp_path, 6))
    packed = pack_series(paths, level=1)
    assert packed.raw_bytes == sum(p.stat().st_size for p in paths)
    assert all(packed.compressed) and packed.sent_bytes < packed.raw_bytes  # native CT pixels compress
    from_files, from_bytes = load_series(paths), load_series(unpack_series(packed))
    assert np.array_equal(from_files.array, from_bytes.array)
    assert from_files.spacing == from_bytes.spacing


def test_compression_only_where_it_pays(tmp_path):
    noise = tmp_path / "noise.bin"
    noise.write_bytes(np.random.default_rng(1).bytes(50_000))  # as incompressible as JPEG 2000 pixel data
    packed = pack_series([noise], level=1)
    assert packed.compressed == (False,) and packed.instances[0] == noise.read_bytes()
    assert pack_series([noise], level=0).compressed == (False,)


def test_compressed_on_a_cluster_not_on_the_local_ray():
    assert compress_level(None, local_ray=True) == 0 and compress_level(None, local_ray=False) == 1
    assert compress_level(3, local_ray=True) == 3 and compress_level(0, local_ray=False) == 0


def test_an_unreadable_instance_is_named_by_its_place():
    packed = PackedSeries((zlib.compress(b"not DICOM"),), (True,), 9)
    with pytest.raises(ValueError, match="instance 1: not readable as DICOM"):
        unpack_series(packed)


def test_key_images_come_back_as_bytes_and_land_in_the_gateways_folder(tmp_path):
    from radtriage.synth import synthesize

    folder = synthesize("ct-head", 1, 21, tmp_path / "in", {"matrix": 256, "positive": True,
                                                           "subtypes": ["intraparenchymal"]})[0]
    spec = load_pipeline(REPO / "pipelines" / "stroke_ich.yaml")
    runner = TaskRunner(spec, REPO / "models", threads=1)
    series = [p for p in sorted(folder.glob("*.dcm")) if _series_number(p) == _main_series(folder)]
    outcome = run_shipped(runner, pack_series(series))
    assert outcome["ok"] and outcome["result"]["positive"], outcome
    names = [f["key_image"] for f in outcome["result"]["findings"] if f.get("key_image")]
    assert names and all("/" not in n for n in names)  # the replica's folder is not sent
    assert all(outcome["key_images"][n].startswith(b"\x89PNG") for n in names)

    landed = land_key_images({"stroke_ich": outcome}, tmp_path / "results" / "job-1")["stroke_ich"]
    assert "key_images" not in landed
    paths = [Path(f["key_image"]) for f in landed["result"]["findings"] if f.get("key_image")]
    assert paths and all(p.parent == tmp_path / "results" / "job-1" / "stroke_ich" and p.is_file() for p in paths)


def test_a_key_image_name_that_escapes_its_folder_is_dropped(tmp_path):
    outcome = {"ok": True, "result": {"findings": [{"code": "x", "text": "x", "key_image": "../../evil.png"},
                                                   {"code": "y", "text": "y", "key_image": "y.png"}]},
               "key_images": {"../../evil.png": b"\x89PNG..", "y.png": b"not a png"}}
    landed = land_key_images({"p": outcome}, tmp_path / "keys")["p"]
    assert [f["key_image"] for f in landed["result"]["findings"]] == [None, None]
    assert not (tmp_path / "evil.png").exists() and not (tmp_path / "keys").exists()


def _series_number(path: Path) -> int:
    import pydicom

    return int(pydicom.dcmread(path, stop_before_pixels=True).SeriesNumber)


def _main_series(folder: Path) -> int:
    import json

    return int(json.loads((folder / "truth.json").read_text())["main_series_number"])
