"""The consent service: who may read whose data, for what, until when (default deny).

Modules, one job each:

* ``catalogue``     the purpose and data-category catalogues (``schemas/catalogue/``)
* ``model``         the tables: partners, purpose approvals, consents (immutable), outbox
* ``keys``          the platform's Ed25519 signing keys and the public JWKS
* ``receipts``      signed consent receipts (ISO/IEC TS 27560 shape) and offline verification
* ``changes``       the ``consent.changes`` record every process applies to its cache
* ``service``       granting and changing consents, registering partners and approvals
* ``decisions``     the decision point: ``decide(partner, purpose, category, subject)``
* ``listener``      applies ``consent.changes`` to a process's decision point
* ``property_rule`` the property rule: owner details only with the owner's consent
* ``notifications`` which revocations and expiries partners must be told of (a durable queue)
* ``webhooks``      delivering them: signed (detached JWS), retried, verifiable with the JWKS
* ``vault``         one AES-GCM key per subject, kept apart from the store; blind row refs
* ``erasure``       crypto-shredding: revoke, destroy the key, delete the rows, record it
"""
