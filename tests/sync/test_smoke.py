"""The protocol's happy path end to end: enrol, manifest, push, pull, status."""
import uuid

from .conftest import audit_data, item_data, mutation, observation_data


def test_push_then_pull_round_trip(world):
    import uuid

    handheld = world.enrol("warden")
    manifest = handheld.get("/api/v1/sync/manifest").json()
    assert set(manifest["record_types"]) == {"observation", "street_audit", "audit_item"}
    obs, audit, item = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    results = handheld.push([
        mutation("observation", "create", obs, observation_data()),
        mutation("street_audit", "create", audit, audit_data()),
        mutation("audit_item", "create", item, item_data(audit)),
    ])["results"]
    assert [r["status"] for r in results] == ["applied"] * 3
    other = world.enrol("warden2")
    other.pull_all()
    assert {k[1] for k in other.store} == {str(obs), str(audit), str(item)}
    assert other.store[("observation", str(obs))]["area"] == world.areas["leigh"].pk


def test_a_device_keeps_its_last_push_and_pull_times(tworld):
    """Committed (tworld), so the pull runs as in production: its page in one transaction,
    then the pull time in a transaction of its own."""
    from django.utils import timezone

    from fieldsync.sync.models import Device

    handheld = tworld.enrol("warden")
    before = timezone.now()
    handheld.push_one(mutation("observation", "create", uuid.uuid4(), data=observation_data()))
    device = Device.objects.get(pk=handheld.device_id)
    assert device.last_push_at >= before and device.last_pull_at is None
    between = timezone.now()
    handheld.pull_all()
    device.refresh_from_db()
    assert device.last_pull_at >= between >= device.last_push_at
