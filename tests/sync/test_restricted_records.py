"""Records the DPO restricted are kept but no longer used: not in analysis, exports or counts."""
import uuid

from django.db import connection

from warden_app.aggregates.selectors import RecordFilter as AggregateFilter
from warden_app.aggregates.selectors import _records_sql
from warden_app.analysis.filters import RecordFilter
from warden_app.models import Observation

from .conftest import mutation, observation_data


def test_restricted_observations_leave_analysis_exports_and_aggregates(tworld, client):
    world = tworld  # streams open their own snapshot: data must be committed
    handheld = world.enrol("warden")
    kept, restricted = uuid.uuid4(), uuid.uuid4()
    for record_id in (kept, restricted):
        result = handheld.push_one(mutation("observation", "create", record_id, observation_data()))
        assert result["status"] == "applied"
    Observation.objects.filter(pk=restricted).update(processing_restricted=True)

    selected = Observation.objects.filter(RecordFilter(record_type="observation").q()).values_list("id", flat=True)
    assert set(selected) == {kept}

    sql, params = _records_sql(AggregateFilter(record_type="observation"))
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM ({sql}) s", params)
        assert {row[0] for row in cursor.fetchall()} == {kept}

    client.force_login(world.users["analyst"])
    response = client.get("/api/v1/records/observation?format=csv")
    assert response.status_code == 200
    body = b"".join(response.streaming_content).decode() if response.streaming else response.content.decode()
    assert str(kept) in body
    assert str(restricted) not in body
