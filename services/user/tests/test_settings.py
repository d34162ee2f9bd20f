"""Start-up configuration: signing keys and production safety checks."""

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from meshmart_common.auth import SigningKey
from meshmart_common.settings import Environment
from user_service.domain.signing_keys import load_signing_key
from user_service.main import build_app
from user_service.settings import ConfigurationError, Settings

ADMIN_SECRET = SecretStr("a-real-admin-secret")


def test_production_refuses_to_start_without_a_signing_key(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="JWT_PRIVATE_KEY"):
        Settings(environment=Environment.PRODUCTION, var_dir=tmp_path, admin_password=ADMIN_SECRET)


def test_build_app_refuses_production_settings_without_a_key(tmp_path: Path) -> None:
    # model_construct skips validation, as settings assembled in code might.
    settings = Settings.model_construct(
        environment=Environment.PRODUCTION,
        var_dir=tmp_path,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'u.db'}",
    )
    with pytest.raises(ConfigurationError, match="JWT_PRIVATE_KEY"):
        build_app(settings)
    assert not (tmp_path / "keys").exists()


def test_production_refuses_the_development_admin_password(tmp_path: Path) -> None:
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(SigningKey.generate().to_pem())
    with pytest.raises(ValidationError, match="ADMIN_PASSWORD"):
        Settings(
            environment=Environment.PRODUCTION, var_dir=tmp_path, jwt_private_key_file=key_file
        )
    with pytest.raises(ValidationError, match="ADMIN_PASSWORD"):
        Settings(
            environment=Environment.PRODUCTION,
            var_dir=tmp_path,
            jwt_private_key_file=key_file,
            admin_password=SecretStr("meshmart-admin"),
        )


def test_production_accepts_a_key_in_the_environment_with_escaped_newlines(
    tmp_path: Path,
) -> None:
    key = SigningKey.generate()
    escaped = key.to_pem().decode().replace("\n", "\\n")
    settings = Settings(
        environment=Environment.PRODUCTION,
        var_dir=tmp_path,
        jwt_private_key=SecretStr(escaped),
        admin_password=ADMIN_SECRET,
    )
    assert load_signing_key(settings).kid == key.kid


def test_development_generates_and_then_reuses_a_key_under_var(tmp_path: Path) -> None:
    settings = Settings(environment=Environment.DEVELOPMENT, var_dir=tmp_path)
    first = load_signing_key(settings)
    assert (tmp_path / "keys" / "jwt-signing-key.pem").exists()
    assert load_signing_key(settings).kid == first.kid


def test_a_key_file_that_is_not_a_pem_key_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    settings = Settings(var_dir=tmp_path, jwt_private_key_file=bad)
    with pytest.raises(ConfigurationError, match="not a PEM-encoded RSA private key"):
        load_signing_key(settings)
    missing = Settings(var_dir=tmp_path, jwt_private_key_file=tmp_path / "missing.pem")
    with pytest.raises(ConfigurationError, match="cannot be read"):
        load_signing_key(missing)
