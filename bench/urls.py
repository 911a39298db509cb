"""URL map for benchmarks: the whole project plus a plain DRF bulk-create baseline."""
from django.contrib.gis.geos import Point
from django.urls import include, path
from django.utils import timezone
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from fieldsync.sync.auth import DeviceTokenAuthentication
from warden_app.models import FormDefinition, Observation


class ObservationIn(serializers.ModelSerializer):
    """What a straightforward DRF endpoint would do: ModelSerializer, bulk_create."""

    location = serializers.JSONField()

    class Meta:
        model = Observation
        fields = ["id", "qualifier", "incident_type", "observed_at", "description", "action_taken",
                  "persons_involved", "location", "accuracy_m", "fix_source"]


class DrfBulkCreate(APIView):
    # The same cheap bearer-token check as the sync endpoints, so only the write path differs.
    authentication_classes = [DeviceTokenAuthentication]
    def post(self, request):
        serializer = ObservationIn(data=request.data, many=True)
        serializer.is_valid(raise_exception=True)
        now = timezone.now()
        form = FormDefinition.objects.filter(record_type="observation").first()
        objs = [
            Observation(**{**item, "location": Point(*item["location"]["coordinates"], srid=4326)},
                        author=request.user, organisation_id=request.user.organisation_id, form=form,
                        created_at=now, updated_at=now)
            for item in serializer.validated_data
        ]
        Observation.objects.bulk_create(objs)
        return Response({"created": len(objs)}, status=201)


urlpatterns = [
    path("bench/drf-bulk", DrfBulkCreate.as_view()),
    path("", include("fieldsync.urls")),
]
