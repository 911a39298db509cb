"""The DPO's walk in Chromium at 360 and 1366 px: the access log, a filter, one entry, the
chain verification (asked for on the page, run as the worker runs it), a subject access
search and a rectification with its reason, each page clean (nothing leaves 127.0.0.1, no
console error) and no wider than the window; screenshots under test-artifacts/."""
import uuid

import pytest

from fieldsync.sync.services.devices import device_enrol
from tests.e2e.walk import walker
from tests.sync.conftest import PASSWORD, Handheld, mutation, observation_data, password_hash
from warden_app.accountability import tasks
from warden_app.accountability.services.access_log import access_log_seal
from warden_app.models import AccessLogEntry, Observation, User
from warden_app.roles import Role
from warden_app.services.roles import role_groups_ensure

pytestmark = [pytest.mark.e2e]

JANE = {"name": "Jane Doe", "description": "red coat, tall", "approx_age": 34}


@pytest.fixture
def dpo_world(world, settings, tmp_path, monkeypatch):
    """The e2e world, a DPO, two records naming people pushed from a handheld, the log
    sealed and anchored; the verification the page asks for runs in this process."""
    settings.ACCESS_LOG_ANCHOR = f"file://{tmp_path}/anchors.log"
    dpo = User.objects.create(username="dpo", password=password_hash(), first_name="Dana", last_name="Officer")
    dpo.groups.add(role_groups_ensure()[Role.DPO])
    enrolment = device_enrol(username="warden", password=PASSWORD, label="walk", platform="test")
    handheld = Handheld(token=enrolment.token, device_id=str(enrolment.device.pk))
    records = []
    for persons, text in (([JANE], "Jane Doe shouting at the bus stop by the library"),
                          ([{"name": "Sam Roe", "approx_age": 16}], "ball games against the shop shutters")):
        record_id = str(uuid.uuid4())
        result = handheld.push_one(mutation("observation", "create", record_id,
                                            observation_data(persons_involved=persons, description=text)))
        assert result["status"] == "applied", result
        records.append(record_id)
    access_log_seal()
    monkeypatch.setattr(tasks.access_log_verify_task, "apply_async",
                        lambda **kw: tasks.access_log_verify_task.apply(**kw))
    return {"records": records}


@pytest.mark.parametrize("width", ["phone", "laptop"])
def test_the_dpo_walks_the_log_verification_subject_access_and_a_rectification(live_server, dpo_world, browser,
                                                                               width):
    with walker(browser, live_server.url, "dpo", width) as walk:
        page = walk.page
        walk.sign_in("dpo", PASSWORD)
        page.locator(".doors a", has_text="Data protection").click()
        page.wait_for_url(live_server.url + "/dpo/")
        assert page.locator("h1").inner_text() == "Access log"
        assert page.locator("table.log tbody tr").count() >= 2
        assert page.locator(".chain.sealed").count() >= 2  # sealed, own links checked
        walk.no_overflow()
        walk.shot("log")

        page.fill("input[name=actor]", "warden")
        page.select_option("select[name=action]", "collection")
        page.locator(".filters button[type=submit]").click()
        page.wait_for_load_state()
        assert "actor=warden" in page.url
        rows = page.locator("table.log tbody tr")
        assert rows.count() == 2 and all("Collection" in t for t in rows.all_inner_texts())
        walk.no_overflow()
        walk.shot("filter")

        rows.first.locator("td").first.locator("a").click()
        page.wait_for_load_state()
        assert page.locator("h1").inner_text().startswith("Collection on")
        assert dpo_world["records"][1] in page.content()
        walk.no_overflow()
        walk.shot("entry")

        page.locator(".dpo-tabs a", has_text="Chain verification").click()
        page.wait_for_load_state()
        assert "has not been verified yet" in page.locator(".verdict").inner_text()
        page.get_by_role("button", name="Verify the chain now").click()
        page.wait_for_url(live_server.url + "/dpo/verification/")
        assert "Chain verified" in page.locator(".verdict").inner_text()
        assert "anchors.log" in page.locator(".facts").first.inner_text()
        walk.no_overflow()
        walk.shot("verification")

        page.locator(".dpo-tabs a", has_text="Subject access").click()
        page.wait_for_load_state()
        page.fill("input[name=name]", "Jane")
        page.fill("input[name=purpose]", "SAR-2026-014")
        page.locator(".search-form button[type=submit]").click()
        page.wait_for_load_state()
        assert page.url == live_server.url + "/dpo/subjects/"  # the name never in a URL
        records = page.locator("article.record")
        assert records.count() == 1 and "red coat, tall" in records.first.inner_text()
        walk.no_overflow()
        walk.shot("subject-search")

        record = records.first
        record.locator("summary", has_text="Rectify").click()
        record.locator("input[name=person-0-name]").fill("Jane Dough")
        record.locator("input[name=justification]").first.fill("SAR-2026-014: name misspelt")
        record.locator("input[name=confirm]").first.check()
        walk.no_overflow()
        walk.shot("rectify-form")
        record.get_by_role("button", name="Rectify").click()
        page.wait_for_load_state()
        outcome = page.locator(".outcome")
        assert "Corrected: persons_involved" in outcome.inner_text()
        assert "SAR-2026-014: name misspelt" in outcome.inner_text()
        walk.no_overflow()
        walk.shot("rectified")

        # Back in the log: the rectification on top, the rows the verification covered verified.
        page.locator(".dpo-tabs a", has_text="Access log").click()
        page.wait_for_load_state()
        assert page.locator("table.log tbody tr", has_text="Alteration").count() == 1
        assert page.locator(".chain.verified").count() >= 2
        walk.no_overflow()
        walk.shot("log-after")
        walk.assert_clean()

    jane = Observation.objects.get(pk=dpo_world["records"][0])
    assert jane.persons_involved[0]["name"] == "Jane Dough"
    assert AccessLogEntry.objects.filter(action="alteration", purpose="SAR-2026-014: name misspelt").count() == 1
