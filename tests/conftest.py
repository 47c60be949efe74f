"""Session-wide fixtures: real services (Kafka, PostgreSQL, Keycloak), started once, cleaned up."""

pytest_plugins = [
    "tests.fixtures.kafka",
    "tests.fixtures.databases",
    "tests.fixtures.platform",
    "tests.fixtures.keycloak",
]
