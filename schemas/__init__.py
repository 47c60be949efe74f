"""The shared JSON Schemas and the purpose and category catalogues, shipped as package data."""
