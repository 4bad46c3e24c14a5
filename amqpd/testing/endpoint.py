"""Where a test broker is and how to log in: an immutable `Endpoint` with an `amqp://` URL.

`Endpoint.from_url()` parses `amqp://user:pass@host:port/vhost` (percent-encoded, RabbitMQ's
defaults for missing parts); `Endpoint.url` builds it back, so both directions round-trip.
`with_vhost()` and `with_user()` derive the address of another vhost or login on the same broker.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from urllib.parse import quote, unquote, urlsplit

DEFAULT_PORT = 5672


@dataclass(frozen=True)
class Endpoint:
    """An AMQP broker address plus credentials and vhost; `.url` is what clients take."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    vhost: str = "/"
    user: str = "guest"
    password: str = "guest"
    management_url: str | None = None

    @property
    def url(self) -> str:
        """`amqp://user:pass@host:port/vhost`, every part percent-encoded (`/` is `%2F`)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        credentials = f"{quote(self.user, safe='')}:{quote(self.password, safe='')}"
        return f"amqp://{credentials}@{host}:{self.port}/{quote(self.vhost, safe='')}"

    def with_vhost(self, vhost: str) -> Endpoint:
        return replace(self, vhost=vhost)

    def with_user(self, user: str, password: str) -> Endpoint:
        return replace(self, user=user, password=password)

    @classmethod
    def from_url(cls, url: str, management_url: str | None = None) -> Endpoint:
        """Parse an `amqp://` URL; a bare `host:port` is accepted too (guest, vhost `/`)."""
        if "://" not in url:
            url = "amqp://" + url
        parts = urlsplit(url)
        if parts.scheme != "amqp":
            raise ValueError(f"not an amqp:// URL: {url!r} (TLS is not supported here)")
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or DEFAULT_PORT,
            vhost=unquote(path) if parts.path else "/",
            user=unquote(parts.username) if parts.username is not None else "guest",
            password=unquote(parts.password) if parts.password is not None else "guest",
            management_url=management_url,
        )
