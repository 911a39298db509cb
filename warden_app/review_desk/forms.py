"""Forms of the review desk: they parse and check input only; decisions are the services'."""
from __future__ import annotations

from datetime import date

from django import forms
from django.core.validators import MaxValueValidator, MinValueValidator

from ..choices import ReviewState
from .selectors import QueueFilters

STATE_CHOICES = [
    ("to_review", "To review (submitted or edited)"),
    ("all", "All states"),
    *ReviewState.choices,
]
TYPE_CHOICES = [("", "All types"), ("observation", "Observation"), ("street_audit", "Street audit")]
DECISION_CHOICES = [
    (ReviewState.APPROVED.value, "Approve"),
    (ReviewState.HAS_ISSUES.value, "Return with issues"),
    (ReviewState.REJECTED.value, "Reject"),
    ("comment", "Comment"),
]
# The service requires a note for returns and rejections; a comment is nothing but its note.
NOTE_REQUIRED = {ReviewState.HAS_ISSUES.value, ReviewState.REJECTED.value, "comment"}
FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(9999, 12, 30)
SHOW_CHOICES = [("open", "Open"), ("resolved", "Resolved"), ("all", "All")]
SIDES = [("device", "Device value"), ("server", "Server value")]


class QueueFilterForm(forms.Form):
    state = forms.ChoiceField(choices=STATE_CHOICES, required=False)
    type = forms.ChoiceField(choices=TYPE_CHOICES, required=False)
    area = forms.ChoiceField(required=False)
    author = forms.ChoiceField(required=False)
    # Bounded: the queue filters up to the start of the day after date_to, and 9999-12-31
    # has none (a 500 before).
    date_from = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}),
                                validators=[MinValueValidator(FIRST_DAY), MaxValueValidator(LAST_DAY)])
    date_to = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}),
                              validators=[MinValueValidator(FIRST_DAY), MaxValueValidator(LAST_DAY)])

    def __init__(self, *args, areas: list[tuple[str, str]], authors: list[tuple[str, str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["area"].choices = [("", "All my areas"), *areas, ("none", "Outside every area")]
        self.fields["author"].choices = [("", "Anyone"), *authors]

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and end < start:
            self.add_error("date_to", "The end of the range is before its start.")
        return cleaned

    def filters(self) -> QueueFilters:
        """The valid parts of the input; a bad value filters nothing rather than failing."""
        data: dict = {}
        if self.is_bound:
            self.is_valid()
            data = {k: v for k, v in self.cleaned_data.items() if k not in self.errors}
        return QueueFilters(
            state=data.get("state") or "to_review",
            record_type=data.get("type") or "",
            area=data.get("area") or "",
            author=int(data["author"]) if data.get("author") else None,
            date_from=data.get("date_from"),
            date_to=data.get("date_to"),
        )


class ReviewDecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=DECISION_CHOICES, widget=forms.RadioSelect)
    note = forms.CharField(required=False, max_length=4000, widget=forms.Textarea(attrs={"rows": 3}),
                           help_text="Required to return with issues, reject or comment. "
                                     "A return's note reaches the author's handheld.")
    version = forms.IntegerField(widget=forms.HiddenInput, required=False, min_value=1)

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("decision") in NOTE_REQUIRED and not (cleaned.get("note") or "").strip():
            self.add_error("note", "Write a note: say what the author should fix, or why.")
        return cleaned


class ConflictResolveForm(forms.Form):
    """One device/server choice per field of the conflict, and an optional note."""

    note = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, *args, field_names: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.field_names = field_names
        for name in field_names:
            self.fields[self.key(name)] = forms.ChoiceField(choices=SIDES, widget=forms.RadioSelect,
                                                            label=name)

    @staticmethod
    def key(name: str) -> str:
        return f"field__{name}"

    def choices(self) -> dict[str, str]:
        return {name: self.cleaned_data[self.key(name)] for name in self.field_names}


class QuarantineResolveForm(forms.Form):
    note = forms.CharField(max_length=2000, widget=forms.Textarea(attrs={"rows": 3}),
                           help_text="How it was dealt with (re-keyed, author told…).")

    def clean_note(self) -> str:
        note = self.cleaned_data["note"].strip()
        if not note:
            raise forms.ValidationError("Say how it was resolved.")
        return note


class ListFilterForm(forms.Form):
    show = forms.ChoiceField(choices=SHOW_CHOICES, required=False)

    def show_value(self) -> str:
        return (self.cleaned_data.get("show") if self.is_valid() else "") or "open"


class ApiTokenForm(forms.Form):
    name = forms.CharField(max_length=120, required=False, help_text="What it is for, e.g. 'QGIS laptop'.")
