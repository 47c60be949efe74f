"""The event contract both sides import: the CloudEvents envelope, the bus records, the
dead-letter reasons and the one place a bad event's fate is decided, the schema catalogue,
the domain registry and the connector's proof of origin. It imports nothing else of ours."""
