"""``Authorization: Bearer mesh_…`` authentication for the REST API."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from meshui.accounts.models import ApiToken

_SCHEMES = {b"bearer", b"token"}


class ApiTokenAuthentication(authentication.BaseAuthentication):
    """Personal API tokens. A revoked, expired or unknown token is refused with 401."""

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() not in _SCHEMES:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Authorization header must be 'Bearer <token>'.")
        try:
            plain = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        prefix = ApiToken.split(plain)
        token = ApiToken.objects.select_related("user").filter(prefix=prefix).first() if prefix else None
        if token is None or not token.matches(plain):
            raise exceptions.AuthenticationFailed("Invalid token.")
        now = timezone.now()
        if token.is_revoked:
            raise exceptions.AuthenticationFailed("Token has been revoked.")
        if token.is_expired(now):
            raise exceptions.AuthenticationFailed("Token has expired.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("User is inactive.")
        token.touch(now, timedelta(seconds=settings.API_TOKEN_LAST_USED_RESOLUTION_SECONDS))
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="meshui"'
