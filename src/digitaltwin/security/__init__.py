"""Accounts, tokens, MFA, roles, device keys, rate limiting and request hygiene.

Modules, one concept each:

* :mod:`.roles` - the three roles and their order.
* :mod:`.passwords` - argon2id password hashing.
* :mod:`.secret_key` - the signing keys, refused when weak outside development.
* :mod:`.tokens` - JWT access and MFA-challenge tokens, verification pinned to ``JWT_ALGORITHM``.
* :mod:`.store` - the tables of accounts, sessions, keys and the audit log.
* :mod:`.accounts` - users and role policies; :mod:`.sessions` - login, refresh rotation, logout;
  :mod:`.mfa` - TOTP and recovery codes; :mod:`.api_keys` - scoped device/integration keys.
* :mod:`.policy` - which role or key scope each route needs.
* :mod:`.client_address` and :mod:`.ratelimit` - who the client is, and how often it may call.
* :mod:`.middleware` - rate limit, timeout, security headers (FastAPI limits the body size).
* :mod:`.service` - :class:`SecurityService`, the facade the API and CLI use.
"""
