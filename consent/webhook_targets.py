"""Where a partner's webhook may point: a public http(s) address, never the platform's network.

The platform POSTs to every registered ``webhook_url`` from inside its own network. A URL
naming loopback, a private range, link-local (cloud metadata at 169.254.169.254) or another
special address would turn the webhook into a way to reach the platform's own services
(server-side request forgery). Such URLs are refused unless the operator allows them
(``TSUNAGU_WEBHOOK_ALLOW_PRIVATE``, e.g. for a receiver on the same machine in tests).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from consent.errors import InvalidPartnerError


def check_webhook_url(url: str, *, allow_private: bool) -> None:
    """Refuse (InvalidPartnerError, saying why) a webhook URL the platform must not POST to."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidPartnerError("webhook_url must be an http(s) URL with a host")
    if allow_private:
        return
    host = parts.hostname
    try:
        addresses = {ipaddress.ip_address(host)}
    except ValueError:  # a name: every address it resolves to must be public
        try:
            infos = socket.getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise InvalidPartnerError(
                f"webhook_url host {host!r} does not resolve ({exc}); register a URL whose "
                "host has public DNS records"
            ) from None
        addresses = {ipaddress.ip_address(info[4][0]) for info in infos}
    for address in sorted(addresses, key=str):
        if not address.is_global or address.is_multicast:
            raise InvalidPartnerError(
                f"webhook_url host {host!r} is {address}, a loopback, private or otherwise "
                "non-public address the platform does not post to; use a public address "
                "(or, for a receiver on the platform's own network, set "
                "TSUNAGU_WEBHOOK_ALLOW_PRIVATE=true)"
            )
