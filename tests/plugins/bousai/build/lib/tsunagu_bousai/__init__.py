"""The 防災 (disaster preparedness) domain: residents checking in at evacuation shelters."""

from pathlib import Path

from contract.domains import Domain

DOMAIN = Domain(
    name="bousai",  # its topic, and the first part of its event types
    categories=("bousai.evacuations",),
    subject_kinds=("resident",),
    event_types=("bousai.evacuation.checked_in",),
    # Imported by the broker only; connectors read this declaration without it.
    projection="tsunagu_bousai.projection:PROJECTION",
    # schemas/bousai/<entity>.<action>/v<N>.json and schemas/catalogue/, as the platform's.
    schemas=Path(__file__).parent / "schemas",
)
