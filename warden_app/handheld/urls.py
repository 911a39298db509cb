"""URLs of the handheld app."""
urlpatterns: list = []
