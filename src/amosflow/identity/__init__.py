"""Identity and access: principals, accounts, tokens, OIDC, and the one policy function."""
