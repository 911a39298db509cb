"""Run the photo intake (attachments.photo_clean) on files, in a process of its own, and
report for each the answer and the peak resident memory it took.

    python tests/sync/image_intake_probe.py <content-type>=<path> ...

One JSON line per photo: {"path", "status", "code", "rss", "peak", "vm", "vm_peak"}; rss is
the process's resident size just before the intake (the photo's bytes already read, as a
worker holds a request body), peak its high-water mark during the intake; vm and vm_peak the
same for its address space (VmPeak cannot be reset: it says something only until the first
photo that does decode). All in bytes. The high-water
mark is reset before each photo (writing 5 to /proc/self/clear_refs), so each photo is
measured alone. Django is set up from the environment, as in an app server.
"""
from __future__ import annotations

import gc
import json
import os
import sys
from pathlib import Path


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise LookupError(field)


def main(args: list[str]) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fieldsync.settings")
    import django

    django.setup()
    from fieldsync.errors import ApiError
    from fieldsync.sync.attachments import photo_clean

    for arg in args:
        content_type, path = arg.split("=", 1)
        data = Path(path).read_bytes()
        gc.collect()
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        rss, vm = status_kib("VmRSS"), status_kib("VmSize")
        try:
            cleaned = photo_clean(data, content_type)
            status, code = 201, ""
            del cleaned
        except ApiError as exc:
            status, code = exc.status_code, exc.code
        peak, vm_peak = status_kib("VmHWM"), status_kib("VmPeak")
        print(json.dumps({"path": path, "status": status, "code": code, "rss": rss, "peak": peak,
                          "vm": vm, "vm_peak": vm_peak}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
