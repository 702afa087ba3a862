"""Access control: who may call what (tokens, roles, queue globs), the cluster's own
credential, and the audit log.

- ``tokens``: the token file (TOML), its hashes, creating and revoking tokens, queue globs.
- ``policy``: the roles' rights, the ``Need`` of a route, and ``Authenticator`` (a token
  to a ``Principal``, verified off the event loop and cached; re-read on SIGHUP).
- ``audit``: one structured line (logger ``tqd.audit``) per administrative action and
  per denied request.
- ``commands``: ``tqd token create | list | revoke``.

It knows no HTTP server, storage or service: ``tqd.http.auth`` applies it to requests.
"""
