"""The admin page where administrators decide analysts' purpose-grant requests. Registered
from warden_app/admin.py. Nothing is edited by hand: a decision goes through the service
(approve makes the PurposeGrant with the decider as granted_by; refuse needs a reason)."""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest

from .. import permissions
from ..models import PurposeGrantRequest
from ..services.purpose_requests import purpose_request_approve, purpose_request_refuse


class DecisionForm(forms.ModelForm):
    decision = forms.ChoiceField(choices=[("", "Not yet"), ("approve", "Approve"), ("refuse", "Refuse")],
                                 required=False)
    refusal_reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False,
                                     help_text="Needed to refuse; the analyst sees it.")

    class Meta:
        model = PurposeGrantRequest
        fields = ()

    def clean(self):
        data = super().clean()
        if data.get("decision") == "refuse" and not (data.get("refusal_reason") or "").strip():
            self.add_error("refusal_reason", "Say why the request is refused.")
        return data


@admin.register(PurposeGrantRequest)
class PurposeGrantRequestAdmin(admin.ModelAdmin):
    form = DecisionForm
    list_display = ("requested_at", "requested_by", "record_type", "field_list", "valid_until", "state", "decided_by")
    list_filter = ("state", "record_type")
    list_select_related = ("requested_by", "decided_by")
    readonly_fields = ("requested_by", "record_type", "fields", "purpose", "valid_from", "valid_until",
                       "requested_at", "state", "decided_by", "decided_at", "reason", "grant")
    actions = ["approve_requests"]

    @admin.display(description="fields")
    def field_list(self, row: PurposeGrantRequest) -> str:
        return ", ".join(row.fields)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return permissions.can_manage(request.user)

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return permissions.can_manage(request.user)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return permissions.can_manage(request.user) and (obj is None or obj.state == PurposeGrantRequest.State.PENDING)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # analysts ask from the workspace

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # the request is the record of the decision

    def get_fields(self, request, obj=None):
        decide = ("decision", "refusal_reason") if obj is not None and obj.state == "pending" else ()
        return (*self.readonly_fields, *decide)

    def save_model(self, request: HttpRequest, obj: PurposeGrantRequest, form, change: bool) -> None:
        decision = form.cleaned_data.get("decision")
        try:
            if decision == "approve":
                purpose_request_approve(request=obj, decided_by=request.user)
            elif decision == "refuse":
                purpose_request_refuse(request=obj, decided_by=request.user,
                                       reason=form.cleaned_data["refusal_reason"])
        except (PermissionDenied, ValidationError) as exc:
            self.message_user(request, f"Not decided: {exc}", messages.ERROR)

    def save_related(self, request, form, formsets, change) -> None:
        pass  # nothing related is edited here

    @admin.action(description="Approve the selected requests (each makes a purpose grant)")
    def approve_requests(self, request: HttpRequest, queryset) -> None:
        done = 0
        for row in queryset.filter(state=PurposeGrantRequest.State.PENDING):
            try:
                purpose_request_approve(request=row, decided_by=request.user)
                done += 1
            except (PermissionDenied, ValidationError) as exc:
                self.message_user(request, f"{row}: not approved ({exc})", messages.ERROR)
        self.message_user(request, f"{done} request(s) approved.")
