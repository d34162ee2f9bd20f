"""Where the service's JWT signing key comes from."""

from __future__ import annotations

from meshmart_common.auth import SigningKey
from user_service.settings import ConfigurationError, Settings


def load_signing_key(settings: Settings) -> SigningKey:
    """The RSA key that signs access tokens.

    JWT_PRIVATE_KEY (PEM) wins, then JWT_PRIVATE_KEY_FILE; development and test
    generate a key under var/keys/ when neither is set, production refuses.
    """
    if settings.jwt_private_key is not None:
        pem = settings.jwt_private_key.get_secret_value()
        # Orchestrators often pass multi-line secrets with escaped newlines.
        if "\n" not in pem and "\\n" in pem:
            pem = pem.replace("\\n", "\n")
        return _from_pem(pem.encode(), "JWT_PRIVATE_KEY")
    if settings.jwt_private_key_file is not None:
        path = settings.jwt_private_key_file
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigurationError(
                f"JWT_PRIVATE_KEY_FILE={path} cannot be read: {exc.strerror}"
            ) from exc
        return _from_pem(data, f"JWT_PRIVATE_KEY_FILE={path}")
    if settings.is_development:
        return SigningKey.load_or_create(settings.signing_key_path)
    raise ConfigurationError(
        "production needs a JWT signing key: set JWT_PRIVATE_KEY (PEM) or JWT_PRIVATE_KEY_FILE"
    )


def _from_pem(data: bytes, source: str) -> SigningKey:
    try:
        return SigningKey.from_pem(data)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"{source} is not a PEM-encoded RSA private key") from exc
