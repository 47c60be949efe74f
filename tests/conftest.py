"""Session-wide fixtures: real services (Tansu, PostgreSQL) started once and cleaned up."""

pytest_plugins = ["tests.fixtures.tansu", "tests.fixtures.databases", "tests.fixtures.platform"]
