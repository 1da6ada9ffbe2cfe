"""Signing in through an upstream OpenID Connect provider (identity brokering): operators add
upstreams in Django admin (idp.models.UpstreamProvider); the sign-in page offers each enabled one.

- client: the OpenID Connect relying party, authlib's Django client (discovery, code flow with
  PKCE S256, state, nonce, the ID token validated by authlib against the upstream's JWKS).
- services: what a validated upstream identity does here (just-in-time users, links, mapped roles).
- selectors: reads. views: the start, callback and link pages.
"""
