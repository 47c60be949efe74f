"""A 子育て (childcare) domain that claims the health programme's category as its own."""

from contract.domains import Domain

DOMAIN = Domain(
    name="kosodate",
    categories=("kosodate.checkups", "health.points"),
    subject_kinds=("resident",),
    event_types=("kosodate.checkup.completed",),
    projection="tsunagu_clash_category:NOWHERE",
)
