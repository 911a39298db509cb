"""manage.py commands: demo data and boundary import."""
