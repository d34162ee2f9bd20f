"""The user service's domain errors (rendered as problem+json by meshmart_common)."""

from __future__ import annotations

from meshmart_common.errors import Conflict, TooManyRequests, Unauthorized, ValidationFailed

INVALID_CREDENTIALS = "The email or password is wrong."
INVALID_REFRESH_TOKEN = "The refresh token is invalid, expired or revoked."  # noqa: S105


class EmailAlreadyRegistered(Conflict):
    """Another account uses the email (compared case-insensitively)."""

    def __init__(self) -> None:
        super().__init__("An account with this email already exists.")


class InvalidCredentials(Unauthorized):
    """Unknown email or wrong password: one message for both, so accounts cannot be probed."""

    # The failed attempt counts towards the lockout; rolling it back with the
    # failed request would undo the protection.
    commit_session = True

    def __init__(self) -> None:
        super().__init__(INVALID_CREDENTIALS)


class AccountLocked(TooManyRequests):
    """Too many consecutive failed logins; retry after the lock window."""

    # The refused attempt's audit entry must outlive the failed request.
    commit_session = True

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"Too many failed logins; try again in {max(1, retry_after)} seconds.",
            retry_after=retry_after,
        )


class InvalidRefreshToken(Unauthorized):
    """The refresh token is unknown, expired, revoked, or was already used (reuse)."""

    # A reused token revokes its whole family; that revocation must outlive
    # the failed request.
    commit_session = True

    def __init__(self) -> None:
        super().__init__(INVALID_REFRESH_TOKEN)


class WrongCurrentPassword(ValidationFailed):
    """A password change named a current password that does not match the account's."""

    # The refused change's audit entry must outlive the failed request.
    commit_session = True

    def __init__(self) -> None:
        super().__init__(
            "The current password is wrong.",
            errors=[
                {
                    "field": "current_password",
                    "location": "body",
                    "message": "does not match the account's password",
                    "type": "wrong_password",
                }
            ],
        )


class AccountGone(Unauthorized):
    """The token is valid but its account no longer exists."""

    def __init__(self) -> None:
        super().__init__("The account of this token no longer exists.")


class TooManyAddresses(Conflict):
    """The per-user address limit is reached."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"An account can keep at most {limit} addresses; delete one first.")
