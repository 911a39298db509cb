"""Your personal API tokens over the API: list, make one, revoke one (only ever your own).

Making a token needs a password (Basic) or a desk session, never a token: a stolen token must
not be able to mint a successor that outlives its own expiry or revocation. Listing and
revoking work with a token too (a script can revoke the token it holds)."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated

from fieldsync.api_views import ERROR, ProtocolView
from fieldsync.errors import ApiError, field_error
from fieldsync.responses import json_response

from ..models import ApiToken
from ..services.api_tokens import api_token_create, api_token_revoke_own, api_tokens_of
from .auth import ANALYSIS_AUTHENTICATION

TOKEN_FIELDS = {
    "id": serializers.IntegerField(), "name": serializers.CharField(), "prefix": serializers.CharField(),
    "state": serializers.ChoiceField(["active", "expired", "revoked", "password_changed"]),
    "created_at": serializers.DateTimeField(), "expires_at": serializers.DateTimeField(),
    "last_used_at": serializers.DateTimeField(allow_null=True),
    "revoked_at": serializers.DateTimeField(allow_null=True),
}
TOKEN = inline_serializer("ApiTokenListing", TOKEN_FIELDS)


class TokenView(ProtocolView):
    authentication_classes = ANALYSIS_AUTHENTICATION
    permission_classes = [IsAuthenticated]


class TokensView(TokenView):
    @extend_schema(responses={200: inline_serializer("ApiTokenList", {
        "tokens": inline_serializer("ApiTokenListingItem", TOKEN_FIELDS, many=True)})},
                   summary="Your personal API tokens (never their secrets)")
    def get(self, request):
        return json_response({"tokens": [t.as_json() for t in api_tokens_of(request.user)]})

    @extend_schema(request=inline_serializer("ApiTokenCreate", {"name": serializers.CharField(required=False)}),
                   responses={201: inline_serializer("ApiTokenCreated", {"token": serializers.CharField()}),
                              400: ERROR, 403: ERROR},
                   summary="Make a personal API token (shown once); needs your password or a desk session")
    def post(self, request):
        if isinstance(request.auth, ApiToken):
            raise ApiError("permission_denied", "A token cannot make tokens: sign in with your password.",
                           status_code=403)
        data = request.data if isinstance(request.data, dict) else None
        name = (data or {}).get("name", "")
        if data is None or not isinstance(name, str) or len(name) > 120 or "\x00" in name:
            raise ApiError("invalid", "Send {\"name\": \"what the token is for\"} (at most 120 characters).",
                           fields={"name": [field_error("invalid", "a string of at most 120 characters")]})
        row, token = api_token_create(user=request.user, name=name)
        listing = next(t for t in api_tokens_of(request.user) if t.id == row.pk)
        return json_response({"token": token, **listing.as_json()}, status=201)


class TokenDetailView(TokenView):
    @extend_schema(responses={200: TOKEN, 404: ERROR}, summary="Revoke one of your personal API tokens")
    def delete(self, request, token_id: int):
        row = api_token_revoke_own(user=request.user, token_id=token_id)
        listing = next(t for t in api_tokens_of(request.user) if t.id == row.pk)
        return json_response(listing.as_json())
