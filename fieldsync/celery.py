"""The Celery application: thumbnails, exports, escalations and retention run here."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fieldsync.settings")

app = Celery("fieldsync")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
