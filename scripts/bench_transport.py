#!/usr/bin/env python3
"""What crosses the network per study under ``inference.transport: object_store``, and what it costs.

For one synthetic CT head (``--matrix`` 512, the soft-tissue series; the localizer and the bone twin are
separate jobs) it prints, for the two things that could travel to a replica:

* the instance files' bytes: raw, and packed as the gateway sends them (`serving.transport.pack_series`,
  zlib level 1 where it saves a tenth), with the CPU time to pack on the gateway and to unpack and read
  into a volume on the node;
* the decoded float32 volume: raw and zlib level 1, with the time to compress it;

and what comes back: the result's JSON and the key images' PNG bytes (a positive study, one pipeline).
The last line is ``RESULT series_mb=<n> sent_mb=<n> volume_mb=<n> back_kb=<n>``.

    python scripts/bench_transport.py [--matrix 512] [--seed 21]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import tempfile
import time
import zlib
from pathlib import Path

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    from radtriage.imaging.series import load_series
    from radtriage.inference.runner import TaskRunner
    from radtriage.pipelines import load_pipeline
    from radtriage.serving.app import run_shipped
    from radtriage.serving.transport import pack_series, unpack_series
    from radtriage.synth import synthesize

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--matrix", type=int, default=512)
    p.add_argument("--seed", type=int, default=21)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-transport-") as tmp:
        folder = synthesize("ct-head", 1, args.seed, Path(tmp), {"matrix": args.matrix, "positive": True,
                                                                  "subtypes": ["intraparenchymal"]})[0]
        main_number = json.loads((folder / "truth.json").read_text())["main_series_number"]
        import pydicom

        files = [f for f in sorted(folder.glob("*.dcm"))
                 if int(pydicom.dcmread(f, stop_before_pixels=True).SeriesNumber) == main_number]
        t0 = time.process_time()
        packed = pack_series(files, level=1)
        t1 = time.process_time()
        volume = load_series(unpack_series(packed))
        t2 = time.process_time()
        pickled = pickle.dumps(volume, protocol=5)
        t3 = time.process_time()
        volume_z = zlib.compress(pickled, 1)
        t4 = time.process_time()
        runner = TaskRunner(load_pipeline(REPO / "pipelines" / "stroke_ich.yaml"), REPO / "models", threads=2)
        outcome = run_shipped(runner, packed)
    back_json = len(json.dumps(outcome["result"]).encode())
    back_png = sum(len(b) for b in outcome.get("key_images", {}).values())
    mb = 1e6
    print(f"series: {len(files)} instances of {volume.array.shape[1]}x{volume.array.shape[2]}, "
          f"{packed.raw_bytes / mb:.1f} MB of files")
    print(f"instances packed (zlib 1 where it pays): {packed.sent_bytes / mb:.1f} MB "
          f"({packed.sent_bytes / packed.raw_bytes:.2f}); pack {t1 - t0:.2f} CPU-s, unpack + read {t2 - t1:.2f} CPU-s")
    print(f"decoded volume ({volume.array.dtype}): {len(pickled) / mb:.1f} MB, zlib 1: {len(volume_z) / mb:.1f} MB "
          f"in {t4 - t3:.2f} CPU-s")
    print(f"back: result JSON {back_json / 1e3:.1f} kB, {len(outcome.get('key_images', {}))} key image(s) "
          f"{back_png / 1e3:.1f} kB (positive: {outcome['result']['positive']})")
    print(f"RESULT series_mb={packed.raw_bytes / mb:.2f} sent_mb={packed.sent_bytes / mb:.2f} "
          f"volume_mb={len(pickled) / mb:.2f} back_kb={(back_json + back_png) / 1e3:.1f}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "src"))
    sys.exit(main())
