"""Photo storage chosen by FIELDSYNC_STORAGE: local disk by default, an S3-compatible bucket
with `s3` (private, signed URLs), a clear error otherwise; static files stay local either way.
Each case loads the settings afresh in a child process."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from .stack import BASE_DIR

SHOW = """
import json
from django.conf import settings
from django.core.files.storage import default_storage
default_storage._setup()  # the lazy object, resolved
s = default_storage._wrapped
out = {"backend": type(s).__module__ + "." + type(s).__name__,
       "static": settings.STORAGES["staticfiles"]["BACKEND"]}
if out["backend"].endswith("S3Storage"):
    out.update(bucket=s.bucket_name, endpoint=s.endpoint_url, style=s.addressing_style,
               expire=s.querystring_expire, acl=s.default_acl,
               url=s.url("attachments/ab/abcdef"))
else:
    out.update(location=str(s.location))
print(json.dumps(out))
"""


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    child = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FIELDSYNC_STORAGE"))}
    child.pop("DEBUG", None)
    child.update(DJANGO_SETTINGS_MODULE="fieldsync.settings", **env)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=BASE_DIR, env=child,
                          capture_output=True, text=True, timeout=120, check=False)


def shown(**env: str) -> dict:
    result = manage("shell", "--no-imports", "-c", SHOW, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_default_is_the_local_disk_under_media_root(tmp_path):
    found = shown(MEDIA_ROOT=str(tmp_path))
    assert found["backend"] == "django.core.files.storage.filesystem.FileSystemStorage"
    assert found["location"] == str(tmp_path)
    assert found["static"] == "django.contrib.staticfiles.storage.StaticFilesStorage"


def test_s3_compatible_storage_with_private_signed_urls():
    found = shown(FIELDSYNC_STORAGE="s3", AWS_STORAGE_BUCKET_NAME="fieldsync-photos",
                  AWS_S3_ENDPOINT_URL="https://minio.internal:9000", AWS_S3_ADDRESSING_STYLE="path",
                  AWS_S3_REGION_NAME="eu-west-2",
                  # Presigning is local arithmetic: these keys never leave the process.
                  AWS_ACCESS_KEY_ID="AKIAEXAMPLE", AWS_SECRET_ACCESS_KEY="not-a-real-secret")
    assert found["backend"] == "storages.backends.s3.S3Storage"
    assert found["bucket"] == "fieldsync-photos"
    assert found["endpoint"] == "https://minio.internal:9000"
    assert found["style"] == "path" and found["acl"] is None and found["expire"] == 300
    assert found["url"].startswith("https://minio.internal:9000/fieldsync-photos/attachments/ab/abcdef?")
    assert "X-Amz-Signature=" in found["url"] and "X-Amz-Expires=300" in found["url"]
    assert found["static"] == "django.contrib.staticfiles.storage.StaticFilesStorage"


def test_s3_without_a_bucket_or_an_unknown_backend_refuses_to_start():
    result = manage("check", FIELDSYNC_STORAGE="s3")
    assert result.returncode != 0 and "FIELDSYNC_STORAGE=s3 needs AWS_STORAGE_BUCKET_NAME" in result.stderr
    result = manage("check", FIELDSYNC_STORAGE="ftp")
    assert result.returncode != 0 and "FIELDSYNC_STORAGE must be filesystem or s3" in result.stderr


def test_collectstatic_writes_local_files_whatever_the_photo_storage(tmp_path):
    result = manage("collectstatic", "--noinput", "-v", "1", STATIC_ROOT=str(tmp_path),
                    FIELDSYNC_STORAGE="s3", AWS_STORAGE_BUCKET_NAME="fieldsync-photos")
    assert result.returncode == 0, result.stderr
    assert "static files copied" in result.stdout
    assert (tmp_path / "admin" / "css" / "base.css").is_file()
