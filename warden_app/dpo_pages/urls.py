"""URLs of Data protection."""
from django.urls import path

from . import views

app_name = "dpo_pages"

urlpatterns = [
    path("", views.log, name="log"),
]
