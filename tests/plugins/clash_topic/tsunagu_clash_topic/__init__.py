"""A second 'transport' domain (buses of another firm), whose topic is already taken."""

from contract.domains import Domain

DOMAIN = Domain(
    name="transport",
    categories=("transport.buses",),
    subject_kinds=("vehicle",),
    event_types=("transport.bus.departed",),
    projection="tsunagu_clash_topic:NOWHERE",
)
