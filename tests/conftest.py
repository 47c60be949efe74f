"""Session-wide fixtures: real services (Apache Kafka, PostgreSQL) started once and cleaned up."""

pytest_plugins = ["tests.fixtures.kafka", "tests.fixtures.databases", "tests.fixtures.platform"]
