"""Identities: who calls the API (JWT bearer tokens), with which role."""
