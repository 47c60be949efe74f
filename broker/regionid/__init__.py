"""The region ID: the region's embedded OpenID provider (residents and auditors sign in once).

Built on Authlib's framework-neutral server parts (``server.py``); the API's routes adapt
Starlette requests to it (``broker/api/routes/regionid.py``). Each service company is a
registered client with exact redirect URIs (``clients.py``, ``tsunagu regionid client add``);
each resident is a different, stable pairwise subject to each of them (``subjects.py``); how a
resident's identity was proofed is stated as ``acr`` and ``verified_claims``
(``proofing.py``).
"""

from broker.regionid.errors import ClientRegistrationError, RegionIdError, SignInError

__all__ = ["ClientRegistrationError", "RegionIdError", "SignInError"]
