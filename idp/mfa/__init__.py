"""Second factors: authenticator apps (TOTP), passkeys and security keys (WebAuthn), recovery
codes; the policy that requires them; the sign-in that waits for them; and the level (acr) and
methods (amr) that relying parties see. docs/second-factors.md describes it for operators."""
