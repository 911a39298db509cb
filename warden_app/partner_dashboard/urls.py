"""URLs of Partner dashboard."""
from django.urls import path

from . import views

app_name = "partner_dashboard"

urlpatterns = [
    path("", views.home, name="home"),
]
