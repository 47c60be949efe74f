"""The region ID's domain errors (below the API; the routes answer them)."""

from __future__ import annotations


class RegionIdError(Exception):
    """Root of the region ID's errors."""


class ClientRegistrationError(RegionIdError):
    """A client registration that cannot be accepted; the message says what to change."""


class SignInError(RegionIdError):
    """A username and password that do not sign anyone in (never says which was wrong)."""
