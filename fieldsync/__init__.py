"""fieldsync: the Django project and the generic offline sync engine."""
from .celery import app as celery_app

__all__ = ["celery_app"]
