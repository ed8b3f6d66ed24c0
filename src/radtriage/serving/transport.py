"""How a series reaches a replica, and how its key images come back (``inference.transport``).

``object_store`` (the default): Ray nodes share no disk with the gateway. The
gateway reads the series' instance files from its spool, compresses each one
with zlib (on a cluster; `compress_level`) where that saves at least a tenth (CT's native pixel data about halves;
JPEG 2000 and other compressed transfer syntaxes are sent as they are), puts the
whole series into Ray's object store once (`ray.put`) and sends the replicas
a `ShippedSeries` that holds only the reference: the bytes travel from the
gateway's node to each node that runs a matched pipeline, once per node, never
through the Serve controller or the ingress. The replica reads the instances
from memory (`unpack_series`), draws key images into a temporary folder of its
own and sends their PNG bytes back in the response (`ship_key_images`); the
gateway writes them into its data directory (`land_key_images`).

Instance bytes rather than the decoded volume travel because they are smaller
(a 31-slice 512x512 CT head, `scripts/bench_transport.py`: 16.3 MB of files,
6.3 MB packed, against a 32.5 MB float32 volume, 9.0 MB compressed at twice
the CPU) and because the replica then reads them exactly as it reads files
(every transfer syntax, localizers, geometry checks): one way to read a
series (docs/cluster.md).

``shared_path``: the request carries the paths of the instance files and the
folder for key images; every node must mount the gateway's data directory at
the same path. The operator declares it; it is never assumed.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import pydicom

OBJECT_STORE, SHARED_PATH = "object_store", "shared_path"
WORTH = 0.9  # an instance is sent compressed only when that leaves at most this share of its bytes


@dataclass(frozen=True)
class PackedSeries:
    """A series' instance files as bytes, each zlib-compressed where it paid (``compressed[i]``)."""

    instances: tuple[bytes, ...]
    compressed: tuple[bool, ...]
    raw_bytes: int

    @property
    def sent_bytes(self) -> int:
        return sum(len(b) for b in self.instances)


@dataclass(frozen=True)
class ShippedSeries:
    """What a request carries under ``object_store``: the object-store reference to a `PackedSeries`.

    Wrapped so that Ray passes the reference on untouched (a top-level ``ObjectRef`` argument would be
    fetched by the ingress and copied again to every pipeline); each replica awaits it itself."""

    ref: Any


def compress_level(configured: int | None, local_ray: bool) -> int:
    """The zlib level to send instances with: the configured one, else none on the local Ray this process
    started (nothing crosses a network there) and 1 on a cluster (6.3 MB instead of 16.3 MB per CT head)."""
    if configured is not None:
        return configured
    return 0 if local_ray else 1


def pack_series(paths: Iterable[str | Path], level: int = 1) -> PackedSeries:
    """The files' bytes, compressed at zlib ``level`` where that saves a tenth or more (0: never)."""
    out, flags, raw = [], [], 0
    for p in paths:
        data = Path(p).read_bytes()
        raw += len(data)
        small = zlib.compress(data, level) if level > 0 else data
        keep = level > 0 and len(small) <= WORTH * len(data)
        out.append(small if keep else data)
        flags.append(keep)
    return PackedSeries(tuple(out), tuple(flags), raw)


def unpack_series(packed: PackedSeries) -> list[pydicom.Dataset]:
    """The datasets of a `PackedSeries`, read from memory in the order given.

    An instance that is not DICOM is left as its bytes' reader error for `load_series` to name by place."""
    datasets = []
    for i, (data, compressed) in enumerate(zip(packed.instances, packed.compressed, strict=True)):
        try:
            datasets.append(pydicom.dcmread(BytesIO(zlib.decompress(data) if compressed else data)))
        except Exception as exc:  # noqa: BLE001 - one clear error naming the place, never the content
            raise ValueError(f"instance {i + 1}: not readable as DICOM ({type(exc).__name__})") from None
    return datasets


def ship_key_images(outcome: dict[str, Any], folder: Path) -> dict[str, Any]:
    """A replica's outcome with each key image's PNG bytes in ``key_images`` (by file name) and each
    finding's ``key_image`` reduced to that name (the replica's folder means nothing to the gateway)."""
    if not outcome.get("ok"):
        return outcome
    images: dict[str, bytes] = {}
    findings = []
    for f in outcome["result"].get("findings", []):
        if f.get("key_image"):
            path = Path(f["key_image"])
            if path.parent.resolve() == folder.resolve() and path.is_file():
                images[path.name] = path.read_bytes()
                f = {**f, "key_image": path.name}
            else:
                f = {**f, "key_image": None}
        findings.append(f)
    return {**outcome, "result": {**outcome["result"], "findings": findings}, "key_images": images}


def land_key_images(outcomes: dict[str, dict[str, Any]], key_dir: Path) -> dict[str, dict[str, Any]]:
    """The outcomes with their shipped key images written under ``key_dir/<pipeline>/`` and each finding's
    ``key_image`` the path written. A name that is not a plain ``.png`` file name is dropped, not written."""
    landed = {}
    for pid, outcome in outcomes.items():
        images = outcome.pop("key_images", None)
        if not outcome.get("ok") or images is None:
            landed[pid] = outcome
            continue
        folder = key_dir / pid
        findings = []
        for f in outcome["result"].get("findings", []):
            name = f.get("key_image")
            if name:
                f = {**f, "key_image": _write_png(folder, name, images.get(name))}
            findings.append(f)
        landed[pid] = {**outcome, "result": {**outcome["result"], "findings": findings}}
    return landed


def _write_png(folder: Path, name: str, data: bytes | None) -> str | None:
    if data is None or Path(name).name != name or not name.endswith(".png") or not data.startswith(b"\x89PNG"):
        return None
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    return str(path)
