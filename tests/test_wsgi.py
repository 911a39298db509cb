"""The WSGI module gunicorn loads leaves each worker with its start-up heap frozen."""
import os
import subprocess
import sys

PROBE = """
import gc, sys
import fieldsync.wsgi
print(gc.get_freeze_count(), 'fieldsync.sync.views' in sys.modules, 'warden_app.urls' in sys.modules)
"""


def test_a_worker_loads_every_view_then_freezes_what_it_loaded():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "fieldsync.settings"}
    env.setdefault("SECRET_KEY", "wsgi-probe-" + "k" * 50)
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120,
                         check=True).stdout.split()
    frozen, views_loaded, urls_loaded = int(out[0]), out[1] == "True", out[2] == "True"
    # Django, DRF and GeoDjango alone leave about 100,000 objects: far more than any
    # young generation the collector would otherwise walk again and again.
    assert frozen > 50_000
    assert views_loaded and urls_loaded
