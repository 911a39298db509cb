"""gunicorn settings for the fieldsync app servers: `gunicorn -c deploy/gunicorn.conf.py fieldsync.wsgi`.

Every value can be changed by an environment variable (deploy/README.md lists them). Graceful
restarts: `kill -HUP <master>` re-reads this file and replaces the workers one by one, each
finishing its requests first (up to graceful_timeout); the app is not preloaded, so new
workers also load new code. `kill -TERM` stops gracefully, `kill -QUIT` at once.
"""
import os


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    return int(raw) if raw else default


bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
# Sync workers: a push is CPU and database work, and nginx buffers slow clients (request and
# response), so a worker is never held by a handheld on a bad signal. With threads > 1
# gunicorn switches to gthread by itself.
workers = _int("GUNICORN_WORKERS", 2 * (os.cpu_count() or 1) + 1)
threads = _int("GUNICORN_THREADS", 1)
# A full push (500 mutations) takes well under a second; 30 s is a hung worker, which is
# killed and replaced. nginx's proxy_read_timeout (60 s) is longer, so nginx sees the 502.
timeout = _int("GUNICORN_TIMEOUT", 30)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = _int("GUNICORN_KEEPALIVE", 5)
# Recycle workers now and then (memory held by large exports); jitter keeps them from all
# restarting at once. Rarely: a new worker loads the app, reconnects and prepares its
# statements again, and answers slowly meanwhile. At 2000 a five-minute steady shift
# (bench/load.py, 83 requests/s on 5 workers) recycled each worker twice, which cost
# 27 CPU-seconds of 200 and quadrupled push p95 (2.5 s against 0.62 s without).
max_requests = _int("GUNICORN_MAX_REQUESTS", 20000)
max_requests_jitter = _int("GUNICORN_MAX_REQUESTS_JITTER", 2000)
preload_app = False
# The heartbeat file on tmpfs: in containers /tmp may be overlayfs, which can stall workers.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108 - tmpfs on purpose

# Only the proxy may set X-Forwarded-*: its address (or "*" where only the proxy can reach the
# app port, as in compose and Kubernetes). Django trusts X-Forwarded-Proto itself
# (SECURE_PROXY_SSL_HEADER); nginx overwrites that header on every request.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# Logs to stdout/stderr for the process manager. The access log names the request path but
# not its query string (filters may name people), the real client (nginx's X-Forwarded-For),
# the time taken in seconds and nginx's request id, so one request can be followed end to end.
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-")
errorlog = os.environ.get("GUNICORN_ERROR_LOG", "-")
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
access_log_format = (
    '%({x-forwarded-for}i)s %(h)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(L)s '
    '"%(a)s" %({x-request-id}i)s pid=%(p)s'
)
proc_name = "fieldsync"
