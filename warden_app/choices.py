"""Code lists from docs/domain.md: ASB qualifiers and types, audit issues and grades, roles."""
from django.db import models


class Qualifier(models.TextChoices):
    """National Standard for Incident Recording (2011) ASB qualifiers."""

    PERSONAL = "personal", "Personal"
    NUISANCE = "nuisance", "Nuisance"
    ENVIRONMENTAL = "environmental", "Environmental"


class IncidentType(models.TextChoices):
    """The pre-2011 national ASB categories, still in local use."""

    VEHICLE_ABANDONED = "vehicle_abandoned", "Vehicle abandoned (not stolen)"
    VEHICLE_NUISANCE = "vehicle_nuisance", "Vehicle nuisance or inappropriate use"
    ROWDY_INCONSIDERATE = "rowdy_inconsiderate", "Rowdy or inconsiderate behaviour"
    ROWDY_NUISANCE_NEIGHBOURS = "rowdy_nuisance_neighbours", "Rowdy or nuisance neighbours"
    LITTERING_DRUGS_PARAPHERNALIA = (
        "littering_drugs_paraphernalia",
        "Littering or drugs paraphernalia",
    )
    ANIMAL_PROBLEMS = "animal_problems", "Animal problems"
    TRESPASS = "trespass", "Trespass"
    NUISANCE_COMMUNICATIONS = "nuisance_communications", "Malicious or nuisance communications"
    STREET_DRINKING = "street_drinking", "Street drinking"
    PROSTITUTION_RELATED = "prostitution_related", "Prostitution related activity"
    NOISE = "noise", "Noise"
    BEGGING_VAGRANCY = "begging_vagrancy", "Begging or vagrancy"
    FIREWORKS = "fireworks", "Misuse of fireworks"
    HOAX_CALLS = "hoax_calls", "Hoax calls to emergency services"
    OTHER = "other", "Other"


class ActionTaken(models.TextChoices):
    NONE = "none", "No action"
    ADVICE = "advice", "Advice given"
    CONTACT_CARD = "contact_card", "Contact card issued"
    WARNING = "warning", "Verbal warning"
    REFERRAL = "referral", "Referral to a partner agency"
    FIXED_PENALTY = "fixed_penalty", "Fixed penalty notice"
    REPORTED_TO_POLICE = "reported_to_police", "Reported to police"
    REPORTED_TO_COUNCIL = "reported_to_council", "Reported to council service"
    OTHER = "other", "Other"


class IssueType(models.TextChoices):
    """Default street-audit checklist; form versions may add codes of their own."""

    LITTER = "litter", "Litter"
    DETRITUS = "detritus", "Detritus"
    GRAFFITI = "graffiti", "Graffiti"
    FLY_POSTING = "fly_posting", "Fly-posting"
    FLY_TIPPING = "fly_tipping", "Fly-tipping"
    ABANDONED_VEHICLE = "abandoned_vehicle", "Abandoned vehicle"
    STREET_LIGHT_OUT = "street_light_out", "Street light out"
    DAMAGED_STREET_FURNITURE = "damaged_street_furniture", "Damaged street furniture"
    DRUG_LITTER = "drug_litter", "Drug litter"
    DOG_FOULING = "dog_fouling", "Dog fouling"
    OVERGROWN_VEGETATION = "overgrown_vegetation", "Overgrown vegetation"
    INSECURE_BUILDING = "insecure_building", "Insecure building"
    POOR_LIGHTING = "poor_lighting", "Poor lighting"
    CCTV_BLIND_SPOT = "cctv_blind_spot", "CCTV blind spot"
    ALLEYWAY_ACCESS = "alleyway_access", "Alleyway access"
    OTHER = "other", "Other"


# Code of Practice on Litter and Refuse grades apply to these four only.
GRADED_ISSUE_TYPES = ("litter", "detritus", "graffiti", "fly_posting")


class Grade(models.TextChoices):
    A = "A", "A: clean"
    B = "B", "B: predominantly free, minor instances"
    C = "C", "C: widespread minor accumulations"
    D = "D", "D: significant accumulations"


ACCEPTABLE_GRADES = ("A", "B")


class FixSource(models.TextChoices):
    GPS = "gps", "GPS"
    NETWORK = "network", "Network"
    MANUAL = "manual", "Manual pin"
    UNKNOWN = "unknown", "Unknown"


class ReviewState(models.TextChoices):
    SUBMITTED = "submitted", "Submitted"
    HAS_ISSUES = "has_issues", "Has issues"
    EDITED = "edited", "Edited after review"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"


class OrganisationKind(models.TextChoices):
    COUNCIL = "council", "Local authority"
    POLICE = "police", "Police"
    FIRE = "fire", "Fire and rescue"
    HEALTH = "health", "Health"
    HOUSING = "housing", "Housing"
    PROBATION = "probation", "Probation"
    OTHER = "other", "Other"


def check_in(field: str, choices: type[models.TextChoices]) -> models.Q:
    """A Q for a CHECK constraint that keeps a column within its code list."""
    return models.Q(**{f"{field}__in": choices.values})
