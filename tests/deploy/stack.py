"""Pieces of the production shape for tests: a self-signed certificate and nginx with
deploy/nginx/fieldsync.conf as written (only addresses and paths swapped). Ports, children's
environments, Redis and process groups come from devtools/processes.py (bench/ uses them too)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from devtools.processes import (  # noqa: F401  (the tests' one import of these)
    BASE_DIR,
    NOT_INHERITED,
    SYSTEM_HINT,
    Processes,
    child_database_url,
    child_env,
    free_port,
    group_members,
    live_processes,
    proc_stat,
    redis_server_argv,
    wait_until,
    with_application_name,
)

DEPLOY = BASE_DIR / "deploy"
NGINX_CONF = DEPLOY / "nginx" / "fieldsync.conf"


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    assert found, "nginx is not installed: deploy/local/ensure-system.sh installs nginx-light (make test runs it)"
    return found


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, made by openssl, valid for a day."""
    cert, key = directory / "fullchain.pem", directory / "privkey.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


def render_site_conf(*, upstreams: list[str], http_port: int, https_port: int, cert: Path, key: Path,
                     static_root: Path, log_dir: Path) -> str:
    """deploy/nginx/fieldsync.conf with test addresses and paths. Each swapped piece must be
    found exactly once, so the test never silently checks a different configuration."""
    text = NGINX_CONF.read_text()
    log_dir.mkdir(parents=True, exist_ok=True)
    upstream = re.compile(r"^(\s*)server app:8000 (max_fails=\d+ fail_timeout=\w+);$", re.MULTILINE)
    assert len(upstream.findall(text)) == 1, "the upstream line changed; update tests/deploy/stack.py"
    text = upstream.sub(
        lambda m: "\n".join(f"{m.group(1)}server {address} {m.group(2)};" for address in upstreams), text
    )
    swaps = {
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen 443 ssl;": f"listen 127.0.0.1:{https_port} ssl;",
        "/etc/ssl/fieldsync/fullchain.pem": str(cert),
        "/etc/ssl/fieldsync/privkey.pem": str(key),
        "alias /srv/fieldsync/static/;": f"alias {static_root}/;",
        "/var/log/nginx/access.log": str(log_dir / "access.log"),
    }
    for old, new in swaps.items():
        assert text.count(old) == 1, f"{old!r} is not in {NGINX_CONF} exactly once"
        text = text.replace(old, new)
    return text


def write_nginx_conf(prefix: Path, site_conf: str) -> Path:
    """A main nginx.conf of our own (pid, logs and temp files under `prefix`) that includes
    the site configuration the way Debian's and the official image's do: inside http {}."""
    for sub in ("logs", "tmp"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    (prefix / "fieldsync.conf").write_text(site_conf)
    # As root, workers would drop to "nobody", who cannot enter pytest's private tmp dirs.
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""{user}worker_processes 2;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    access_log {prefix}/logs/main-access.log;
    include {prefix}/fieldsync.conf;
}}
"""
    )
    return conf


def nginx_test(conf: Path, prefix: Path) -> subprocess.CompletedProcess:
    return subprocess.run([nginx_binary(), "-t", "-p", str(prefix), "-c", str(conf)],
                          capture_output=True, text=True, timeout=30, check=False)
