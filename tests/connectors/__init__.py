"""Tests of the connector SDK and the service connectors."""
