"""The service process (listener, API, exports, monitors) does not load torch or MONAI: ~300 MB that only
training, validation and the inference replicas need. A module that imports them at the top and is reached
from the API would bring them back into every gateway process."""

from __future__ import annotations

import subprocess
import sys


def test_the_gateway_does_not_import_torch_or_monai() -> None:
    code = ("import sys, radtriage.service, radtriage.api.app, radtriage.exports.worker, radtriage.governance.decide;"
            "print(sorted(m for m in ('torch', 'monai', 'onnxruntime') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
