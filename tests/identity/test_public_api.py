"""The public surface of amosflow.identity is pinned, so a change to it is deliberate."""

from __future__ import annotations

from pathlib import Path

from amosflow import identity


def test_the_exports_are_pinned() -> None:
    """``__all__`` lists exactly the supported names, and each one exists."""
    assert sorted(identity.__all__) == sorted(
        [
            "ADMINISTRATOR", "ALL_FOLDERS", "Authenticator", "Binding", "CLIENT_REFUSED",
            "CONDITION_NAMES", "CREDENTIALS_REFUSED", "FOLDER_NAME", "FolderScope",
            "GLOBAL_PERMISSIONS", "IdentityKeyError", "IdentitySettings", "JwksCache",
            "LOGIN_REFUSED", "LoginAttempt", "LoginRefused", "MAX_PASSWORD_LENGTH", "NODE_ACCOUNT",
            "OIDC_REFUSED", "OidcIdentity", "OidcSettings", "OidcTokenError", "OidcVerifier",
            "PERMISSIONS", "Principal", "ROLES", "ROLE_PERMISSIONS", "SESSION_REFUSED", "SYSTEM",
            "SessionClaims", "SessionSigner", "SubjectKind", "TOKEN_REFUSED", "USERNAME", "Via",
            "actor_of", "add_members", "allows", "attempt_client", "attempt_password",
            "authenticate_api_token", "authenticate_client", "authenticate_password", "authorize",
            "bearer", "bindings_for", "check_password_policy", "consume_setup_token",
            "count_principals", "create_first_admin", "create_folder", "create_group",
            "create_service_account", "create_setup_token", "create_user", "deactivate",
            "delete_group", "find_by_username", "folder_exists", "folder_scope", "get_group",
            "get_principal", "grant", "group_members", "group_names", "groups_of", "hash_secret",
            "holds_unconditionally", "issue_api_token", "list_api_tokens", "list_bindings",
            "list_folders", "list_groups", "list_principals", "load_private_key", "looks_like_jwt",
            "looks_like_session", "needs_rehash", "node_token", "parse_jwks", "reactivate",
            "remove_members", "rename_group", "rename_user", "revoke_api_token", "revoke_binding",
            "rotate_client_secret", "sees", "set_members", "set_password", "setup_complete",
            "setup_pending", "to_principal", "token_hash", "utc_now", "verify_secret",
        ]
    )  # fmt: skip
    assert all(hasattr(identity, name) for name in identity.__all__)


def test_no_module_of_the_package_is_public() -> None:
    """Every module behind the package is private: importers use the package's names."""
    modules = Path(identity.__file__).parent.glob("*.py")
    assert sorted(p.name for p in modules if not p.name.startswith("_")) == []
