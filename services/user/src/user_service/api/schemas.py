"""Request and response bodies of the user API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints, field_validator

from meshmart_common.auth import Role
from meshmart_common.schemas import RequestBody
from user_service.domain.tokens import MAX_REFRESH_TOKEN_LENGTH
from user_service.repository.models import EMAIL_MAX_LENGTH, FULL_NAME_MAX_LENGTH

# Single-line text: no control characters (they break logs, labels and CSV exports).
_SINGLE_LINE = r"^[^\x00-\x1f\x7f]*$"


def _text(max_length: int) -> Any:
    return StringConstraints(
        strip_whitespace=True, min_length=1, max_length=max_length, pattern=_SINGLE_LINE
    )


Email = Annotated[EmailStr, Field(max_length=EMAIL_MAX_LENGTH, examples=["alice@example.com"])]
Password = Annotated[str, Field(min_length=8, max_length=128, examples=["correct horse battery"])]
FullName = Annotated[str, _text(FULL_NAME_MAX_LENGTH), Field(examples=["Alice Example"])]
Recipient = Annotated[str, _text(100)]
AddressLine = Annotated[str, _text(200)]
City = Annotated[str, _text(100)]
PostalCode = Annotated[str, _text(20)]
CountryCode = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Z]{2}$"),
    Field(description="ISO 3166-1 alpha-2, upper case", examples=["DE"]),
]
Phone = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=3, max_length=32, pattern=r"^\+?[0-9 ()./-]+$"
    ),
    Field(examples=["+49 30 1234567"]),
]
RefreshTokenValue = Annotated[str, Field(min_length=1, max_length=MAX_REFRESH_TOKEN_LENGTH)]


class UserRegister(RequestBody):
    """A new customer account."""

    email: Email
    password: Password
    full_name: FullName | None = None


class UserRead(BaseModel):
    """An account as the API shows it (never the password hash)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    full_name: str | None
    role: Role
    created_at: datetime


class UserUpdate(RequestBody):
    """Profile fields the owner may change (null clears the name)."""

    full_name: FullName | None = None


class LoginRequest(RequestBody):
    """Credentials."""

    email: Annotated[str, Field(min_length=1, max_length=EMAIL_MAX_LENGTH)]
    password: Annotated[str, Field(min_length=1, max_length=128)]


class RefreshRequest(RequestBody):
    """A refresh token from login or a previous refresh."""

    refresh_token: RefreshTokenValue


class TokenResponse(BaseModel):
    """An access token (JWT) and the refresh token that renews it."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth 2 token type
    expires_in: int = Field(description="seconds until the access token expires")
    refresh_token: str


class PasswordChange(RequestBody):
    """The current password and the new one."""

    current_password: Annotated[str, Field(min_length=1, max_length=128)]
    new_password: Password


class AddressCreate(RequestBody):
    """A new shipping address."""

    recipient: Recipient
    line1: AddressLine
    line2: AddressLine | None = None
    city: City
    postal_code: PostalCode
    country: CountryCode
    phone: Phone | None = None
    is_default: bool = False


class AddressUpdate(RequestBody):
    """A partial update: only the fields sent change; line2 and phone may be null."""

    recipient: Recipient | None = None
    line1: AddressLine | None = None
    line2: AddressLine | None = None
    city: City | None = None
    postal_code: PostalCode | None = None
    country: CountryCode | None = None
    phone: Phone | None = None
    is_default: bool | None = None

    @field_validator("recipient", "line1", "city", "postal_code", "country", "is_default")
    @classmethod
    def _required_fields_are_not_null(cls, value: object) -> object:
        # Runs only for fields present in the body; absent ones keep their value.
        if value is None:
            raise ValueError("may be left out, but not set to null")
        return value


class AddressRead(BaseModel):
    """A shipping address."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    recipient: str
    line1: str
    line2: str | None
    city: str
    postal_code: str
    country: str
    phone: str | None
    is_default: bool
    created_at: datetime
    updated_at: datetime
