"""Every failure of the consent service, under one root; the API edge maps them to HTTP.

Each error has a stable ``code`` so the API (and the audit log) can name it without parsing
the message. Nothing here knows about HTTP.
"""

from __future__ import annotations


class ConsentError(Exception):
    """Root of every consent-service failure."""

    code = "consent_error"


class UnknownPartnerError(ConsentError):
    """No partner is registered under this id."""

    code = "unknown_partner"


class PartnerExistsError(ConsentError):
    """A partner with this id is already registered."""

    code = "partner_exists"


class InvalidPartnerError(ConsentError):
    """The partner to register is malformed (id pattern, webhook URL)."""

    code = "invalid_partner"


class UnknownPurposeError(ConsentError):
    """The purpose code is not in the purpose catalogue."""

    code = "unknown_purpose"


class UnknownCategoryError(ConsentError):
    """The data category is not in the category catalogue."""

    code = "unknown_category"


class PurposeNotApprovedError(ConsentError):
    """The municipality has not approved (or has withdrawn) this purpose for this partner."""

    code = "purpose_not_approved"


class PartnerNotRegisteredError(ConsentError):
    """A read by a partner the platform has no record of."""

    code = "partner_not_registered"


class PurposeRequiredError(ConsentError):
    """A partner's read names no purpose: every partner read is for a declared purpose."""

    code = "purpose_required"


class ReadNotApprovedError(ConsentError):
    """A read for a purpose the municipality has not approved (or has withdrawn) for the
    partner: refused on every read path, in every process, from the next request."""

    code = "read_not_approved"


class InvalidConsentError(ConsentError):
    """The consent asked for is malformed: times out of order, no categories, bad subject..."""

    code = "invalid_consent"


class NotPropertyOwnerError(ConsentError):
    """Owner categories (``property.details``) granted by someone who owns no listing."""

    code = "not_property_owner"


class ConsentNotFoundError(ConsentError):
    """No consent with this id belongs to this subject."""

    code = "consent_not_found"


class InvalidTransitionError(ConsentError):
    """The change does not apply to the consent's state (resume an active one, change a revoked
    or superseded one, ...)."""

    code = "invalid_transition"


class ConcurrentChangeError(InvalidTransitionError):
    """Another request changed the same consent first; read it again and retry."""

    code = "concurrent_change"


class SignatureInvalidError(ConsentError):
    """A signed document of the platform failed verification; ``reason`` says which check."""

    code = "signature_invalid"

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class ReceiptInvalidError(SignatureInvalidError):
    """A receipt failed verification; ``reason`` says which check."""

    code = "receipt_invalid"


class KeyStoreError(ConsentError):
    """The signing-key directory is unusable (unreadable key, wrong permissions, ...)."""

    code = "key_store_error"


class NotificationInvalidError(SignatureInvalidError):
    """A partner notification failed verification; ``reason`` says which check."""

    code = "notification_invalid"
