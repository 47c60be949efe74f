"""Keycloak for the OpenID Connect tests (see server.py)."""
