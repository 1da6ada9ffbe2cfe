"""The dashboard's forms: shape and range checks only. The rules (which scopes and roles a key may
carry, the rotation policy) are the services'; a ValidationError from them lands on the form."""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError

from accounts.models import Role

# The service's limits, restated as form bounds so a browser can tell before posting.
MAX_EXPIRY_DAYS = 3650
MAX_ROTATION_DAYS = 365
MAX_GRACE_HOURS = 720  # apikeys.services.MAX_GRACE_PERIOD (30 days)
DEFAULT_GRACE_HOURS = 24


def _grace_hours_field() -> forms.IntegerField:
    return forms.IntegerField(
        label="Grace period (hours)",
        min_value=0,
        max_value=MAX_GRACE_HOURS,
        initial=DEFAULT_GRACE_HOURS,
        help_text="How long a replaced key keeps working after a rotation (0 stops it at once).",
    )


def _rotate_every_days_field() -> forms.IntegerField:
    return forms.IntegerField(
        label="Rotate every (days)",
        required=False,
        min_value=1,
        max_value=MAX_ROTATION_DAYS,
        help_text="Leave empty to rotate only by hand.",
    )


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(max_length=100, strip=True)
    scopes = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple)
    roles = forms.TypedMultipleChoiceField(coerce=int, required=False, widget=forms.CheckboxSelectMultiple)
    expires_in_days = forms.IntegerField(
        label="Expires in (days)",
        required=False,
        min_value=1,
        max_value=MAX_EXPIRY_DAYS,
        help_text="Leave empty for a key that does not expire.",
    )
    rotate_every_days = _rotate_every_days_field()
    grace_hours = _grace_hours_field()

    def __init__(self, *args: Any, scope_choices: list[str], role_choices: list[Role], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        descriptions = settings.OAUTH2_PROVIDER["SCOPES"]
        scopes = cast(forms.MultipleChoiceField, self.fields["scopes"])
        scopes.choices = [(scope, f"{scope}: {descriptions.get(scope, '')}") for scope in scope_choices]
        roles = cast(forms.TypedMultipleChoiceField, self.fields["roles"])
        roles.choices = [(role.pk, str(role)) for role in role_choices]


class ApiKeyScheduleForm(forms.Form):
    rotate_every_days = _rotate_every_days_field()
    grace_hours = _grace_hours_field()


class ApiKeyRevokeForm(forms.Form):
    reason = forms.CharField(label="Reason (optional)", max_length=200, required=False, strip=True)


# Where a service's ValidationError about a field shows on the create and schedule forms.
SERVICE_FIELDS = {
    "name": "name",
    "scope": "scopes",
    "roles": "roles",
    "expires_at": "expires_in_days",
    "rotate_every": "rotate_every_days",
    "grace_period": "grace_hours",
}


def form_add_service_error(form: forms.Form, error: ValidationError) -> None:
    """Put a service's refusal on the form: on the field it names when the form has it, else on top."""
    if not hasattr(error, "error_dict"):
        form.add_error(None, error.messages)
        return
    for field, messages in error.message_dict.items():
        name = SERVICE_FIELDS.get(field)
        form.add_error(name if name in form.fields else None, messages)
