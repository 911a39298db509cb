"""The doors of fieldsync: each workspace, who may open it, and where it is.

Every workspace's guard (`door_required`) and the home page read this one list, so a role
never sees a door on its home page that then refuses it, nor the reverse.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.urls import reverse

from warden_app import permissions


def _signed_in(user) -> bool:
    return bool(getattr(user, "is_authenticated", False) and user.is_active)


def may_use_handheld(user) -> bool:
    """Field staff record; supervisors enrol a handheld too (sync protocol section 2)."""
    return _signed_in(user) and permissions.can_enrol_device(user)


def may_use_desk(user) -> bool:
    """The desk's own rule, so the door and the desk's guard can never disagree."""
    from warden_app.review_desk.selectors import desk_allowed

    return _signed_in(user) and desk_allowed(user)


def may_use_analysis(user) -> bool:
    """The analyst workspace reads records the way the records API does (its own scope)."""
    return _signed_in(user) and permissions.can_read_records(user)


def may_use_partner_dashboard(user) -> bool:
    """Suppressed counts and hotspot classes: anyone the aggregates API answers."""
    return _signed_in(user) and permissions.can_view_aggregates(user)


def may_use_dpo_pages(user) -> bool:
    return _signed_in(user) and permissions.can_read_access_log(user)


def may_use_admin(user) -> bool:
    """Exactly the admin site's own test (AdminSite.has_permission: active staff), so the door
    shown always opens: the DPO is staff too (the access log's admin pages); what each one may
    do inside is the model permissions' business."""
    return _signed_in(user) and user.is_staff


def may_hold_api_tokens(user) -> bool:
    """Anyone signed in may hold tokens; what a token reads is still the holder's rights."""
    return _signed_in(user)


@dataclass(frozen=True)
class Door:
    key: str
    label: str
    url_name: str
    blurb: str
    may_open: Callable[[object], bool]

    @property
    def url(self) -> str:
        return reverse(self.url_name)


DOORS: tuple[Door, ...] = (
    Door("handheld", "Handheld app", "handheld-shell",
         "Record observations and street audits, offline, with GPS and photos.", may_use_handheld),
    Door("desk", "Review desk", "review_desk:queue",
         "Approve or return your team's records, settle conflicts, look after devices.", may_use_desk),
    Door("analysis", "Analysis", "analysis_workspace:map",
         "Records on a map with filters, hotspots and counts, and downloads.", may_use_analysis),
    Door("partner", "Partner dashboard", "partner_dashboard:home",
         "Counts by area and month with small numbers suppressed, and hotspot classes.",
         may_use_partner_dashboard),
    Door("dpo", "Data protection", "dpo_pages:log",
         "The access log and its chain, subject access, rectify, restrict and erase.", may_use_dpo_pages),
    Door("admin", "Administration", "admin:index",
         "People, teams, areas, forms, sharing rules, purpose grants and retention.", may_use_admin),
    Door("tokens", "API tokens", "review_desk:tokens",
         "Tokens for QGIS, GDAL or scripts; each reads what you may read.", may_hold_api_tokens),
)

BY_KEY = {door.key: door for door in DOORS}


def doors_for(user) -> list[Door]:
    """The doors this user may open, in the order of the home page."""
    return [door for door in DOORS if door.may_open(user)]


def door(key: str) -> Door:
    return BY_KEY[key]


def door_at(path: str) -> Door | None:
    """The door whose pages `path` is one of (the longest URL prefix), for the 403 page of a
    view that refused with PermissionDenied rather than through door_required."""
    found = [d for d in DOORS if d.url != "/" and path.startswith(d.url)]
    return max(found, key=lambda d: len(d.url), default=None)
