"""The region ID's domain errors (below the API; the routes answer them)."""

from __future__ import annotations


class RegionIdError(Exception):
    """Root of the region ID's errors."""


class ClientRegistrationError(RegionIdError):
    """A client registration that cannot be accepted; the message says what to change."""


class SignInError(RegionIdError):
    """A username and password that do not sign anyone in (never says which was wrong)."""


class LinkError(RegionIdError):
    """An ID link refused; the message says what to do instead."""


class UnknownLinkCodeError(LinkError):
    """No link code of that value (or not this client's)."""


class ExpiredLinkCodeError(LinkError):
    """A link code past its expiry."""


class SpentLinkCodeError(LinkError):
    """A link code already entered once."""


class LinkedElsewhereError(LinkError):
    """The service's account is already linked to another resident."""


class NotLinkedError(LinkError):
    """No link of this resident with that service."""


class ClientAuthenticationError(RegionIdError):
    """A service company's credentials that do not authenticate it."""
