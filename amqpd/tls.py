"""TLS for the amqps listener: the server's SSLContext and the user a client certificate names.

`server_context(config)` builds the context from the `tls_*` settings: the certificate chain
and key, TLS 1.2 or newer, and client certificates checked against `tls_cafile` when
`tls_verify_peer` is on (required when `tls_fail_if_no_peer_cert` is too), as RabbitMQ's
`ssl_options` do. It raises `ssl.SSLError` / `OSError` for unusable files. `certificate_user`
is the login the EXTERNAL mechanism takes from a verified client certificate: its subject's
common name (CN), as `rabbitmq_auth_mechanism_ssl` with `ssl_cert_login_from = common_name`.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

from amqpd.config import Config


def server_context(config: Config) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(config.tls_certfile, config.tls_keyfile or None)
    if config.tls_cafile:
        context.load_verify_locations(cafile=config.tls_cafile)
    if config.tls_verify_peer:
        context.verify_mode = (
            ssl.CERT_REQUIRED if config.tls_fail_if_no_peer_cert else ssl.CERT_OPTIONAL
        )
    else:
        context.verify_mode = ssl.CERT_NONE
    return context


def certificate_user(peercert: Mapping[str, Any] | None) -> str | None:
    """The CN of a verified peer certificate's subject (the last one if several), or None.

    `peercert` is what `SSLSocket.getpeercert()` returns: empty unless the certificate was
    verified, so an unverified client never gets a name from here."""
    if not peercert:
        return None
    name = None
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                name = value
    return name
