"""Optional viewer authentication: a shared token and/or HTTP basic, compared in constant time."""

from __future__ import annotations

import hmac
import ipaddress

from flask import Request

from ..settings import ConsumerSettings


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


class ViewerAuth:
    """Decides whether a request may see video; /healthz stays open for orchestrators."""

    OPEN_PATHS = frozenset({"/healthz"})

    def __init__(self, settings: ConsumerSettings) -> None:
        self._token = settings.viewer_token
        self._user = settings.viewer_username
        self._password = settings.viewer_password

    @property
    def enabled(self) -> bool:
        return bool(self._token or self._user)

    def allows(self, request: Request) -> bool:
        if not self.enabled or request.path in self.OPEN_PATHS:
            return True
        if self._token:
            bearer = request.headers.get("Authorization", "")
            offered = bearer[7:] if bearer.startswith("Bearer ") else request.args.get("token")
            if _same(offered, self._token):
                return True
        if self._user and request.authorization is not None and request.authorization.type == "basic":
            # Both compared, always, so timing does not reveal which one was wrong.
            user_ok = _same(request.authorization.username, self._user)
            password_ok = _same(request.authorization.password, self._password)
            return user_ok and password_ok
        return False

    @property
    def challenge(self) -> str:
        return 'Basic realm="rtsp-kafka-mjpeg"' if self._user else 'Bearer realm="rtsp-kafka-mjpeg"'


def is_loopback(host: str) -> bool:
    """True when binding `host` keeps the server private to this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
