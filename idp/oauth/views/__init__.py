"""The protocol endpoints, one module each; idp.oauth.urls routes them."""
