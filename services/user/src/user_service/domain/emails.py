"""Email normalisation: one stored form per address, so uniqueness ignores case."""

from __future__ import annotations

import contextlib

from email_validator import EmailNotValidError, validate_email


def normalise_email(raw: str) -> str:
    """The lower-case normalised form of ``raw`` (left as typed, lower-cased, when invalid).

    Lookups of invalid input must still work and simply find nothing; the
    reserved admin domain (meshmart.local) is not valid for email-validator.
    """
    candidate = raw.strip()
    with contextlib.suppress(EmailNotValidError):
        candidate = validate_email(candidate, check_deliverability=False).normalized
    return candidate.lower()
