"""The resident's and the auditor's web pages, served by the API itself."""

from broker.api.pages.serve import router

__all__ = ["router"]
