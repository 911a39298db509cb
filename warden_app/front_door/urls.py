"""The front door, mounted at /."""
from django.urls import path

from . import views

app_name = "front_door"

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.FrontDoorLoginView.as_view(), name="login"),
    path("logout/", views.logout, name="logout"),
]
