"""Password hashes in RabbitMQ's format, checked in constant time.

A hash is what RabbitMQ's definitions export calls `password_hash`: base64 of a 4-byte salt
followed by digest(salt + UTF-8 password), with the digest named by `hashing_algorithm`
(`rabbit_password_hashing_sha256`, RabbitMQ's default, `..._sha512` or `..._md5`).
`hash_password` makes one (sha256, random salt); `PasswordCheck` holds one user's plaintext
password or hash and answers `matches(given)` without leaking timing about either;
`NO_PASSWORD` is the check of a user who has none (created without one, or with a hash
this module cannot read): it takes as long as a real one and never matches.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

SHA256 = "rabbit_password_hashing_sha256"
ALGORITHMS = {
    SHA256: hashlib.sha256,
    "rabbit_password_hashing_sha512": hashlib.sha512,
    "rabbit_password_hashing_md5": hashlib.md5,
}
SALT_SIZE = 4


class BadPasswordHash(ValueError):
    """A password_hash that is not base64 of a salt and a digest of the named algorithm."""


def hash_password(password: str, algorithm: str = SHA256, salt: bytes | None = None) -> str:
    """`password` salted and hashed as RabbitMQ stores it (base64 text)."""
    salt = os.urandom(SALT_SIZE) if salt is None else salt
    digest = ALGORITHMS[algorithm](salt + password.encode()).digest()
    return base64.b64encode(salt + digest).decode()


def parse_hash(password_hash: str, algorithm: str = SHA256) -> tuple[bytes, bytes]:
    """(salt, digest) of a stored hash; BadPasswordHash if it cannot be one."""
    if algorithm not in ALGORITHMS:
        raise BadPasswordHash(
            f"unknown hashing_algorithm {algorithm!r}; known: {', '.join(ALGORITHMS)}"
        )
    try:
        raw = base64.b64decode(password_hash.encode(), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise BadPasswordHash("password_hash is not base64") from None
    size = ALGORITHMS[algorithm]().digest_size
    if len(raw) != SALT_SIZE + size:
        raise BadPasswordHash(
            f"password_hash must hold a {SALT_SIZE}-byte salt and a {size}-byte digest"
        )
    return raw[:SALT_SIZE], raw[SALT_SIZE:]


class PasswordCheck:
    """One user's secret: a plaintext password or a salted hash (never logged, never shown)."""

    __slots__ = ("_digest", "_hash", "_salt")

    def __init__(self, password: str | None = None, password_hash: str | None = None,
                 algorithm: str = SHA256) -> None:  # fmt: skip
        if (password is None) == (password_hash is None):
            raise ValueError("give exactly one of password and password_hash")
        if password_hash is not None:
            self._hash = ALGORITHMS[algorithm] if algorithm in ALGORITHMS else None
            self._salt, self._digest = parse_hash(password_hash, algorithm)
        else:
            self._hash = None  # plaintext: compare the UTF-8 bytes themselves
            self._salt, self._digest = b"", (password or "").encode()

    def matches(self, given: str) -> bool:
        """Whether `given` is the password; the comparison takes constant time."""
        candidate = given.encode()
        if self._hash is not None:
            candidate = self._hash(self._salt + candidate).digest()
        return hmac.compare_digest(candidate, self._digest)

    def __repr__(self) -> str:
        return "PasswordCheck(<hidden>)"


class NoPassword:
    """A user without a usable password: every login with a password is refused."""

    __slots__ = ("_decoy",)

    def __init__(self) -> None:
        self._decoy = PasswordCheck(password_hash=hash_password(""))

    def matches(self, given: str) -> bool:
        self._decoy.matches(given)  # the same work as a real check: no timing hint
        return False

    def __repr__(self) -> str:
        return "PasswordCheck(<none>)"


NO_PASSWORD = NoPassword()
