"""The tamper-evident audit log: hash-chained entries with signed checkpoints, in the store.

``AuditLog`` appends (``log.py``), ``verify_store`` / ``verify_export`` check (``verify.py``),
``export_jsonl`` / ``export_csv`` write files (``export.py``), ``audit_app`` is the CLI.
"""

from broker.audit.checkpoints import Checkpoint
from broker.audit.entries import KINDS, EntryFieldError, EntryKind, SubjectRefs
from broker.audit.export import export_csv, export_jsonl
from broker.audit.log import AuditLog, NewEntry, StoredEntry, decision_recorder
from broker.audit.verify import (
    Problem,
    ProblemKind,
    Verification,
    load_jwks,
    verify_export,
    verify_store,
)

__all__ = [
    "KINDS",
    "AuditLog",
    "Checkpoint",
    "EntryFieldError",
    "EntryKind",
    "NewEntry",
    "Problem",
    "ProblemKind",
    "StoredEntry",
    "SubjectRefs",
    "Verification",
    "decision_recorder",
    "export_csv",
    "export_jsonl",
    "load_jwks",
    "verify_export",
    "verify_store",
]
