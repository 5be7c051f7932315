"""Sealed values in collector ads: a frontend's secrets that only the addressed factory can read.

The factory publishes an RSA public key in its glidefactory ads; a frontend seals a fresh
symmetric key to it (RSA-OAEP, SHA-256) and the values themselves with that key (Fernet:
AES-CBC + HMAC), as glideinWMS does with its ReqEncKeyCode and GlideinEncParam attributes.
Anyone can read the collector; only the holder of the factory's private key can open them.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from updraft.core.errors import UpdraftError

_OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
KEY_TYPE = "RSA-OAEP-SHA256+Fernet"


class SealError(UpdraftError):
    """A sealed value that cannot be opened: not for us, or tampered with."""


class KeyPair:
    def __init__(self, private: rsa.RSAPrivateKey) -> None:
        self.private = private
        self.public_pem = (
            private.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )
        self.key_id = hashlib.sha256(self.public_pem.encode()).hexdigest()[:16]

    @classmethod
    def load_or_create(cls, path: Path) -> KeyPair:
        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            assert isinstance(key, rsa.RSAPrivateKey)
            return cls(key)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        return cls(key)

    def open_key(self, sealed_key: str) -> bytes:
        try:
            return self.private.decrypt(base64.b64decode(sealed_key), _OAEP)
        except (ValueError, TypeError) as exc:
            raise SealError(f"the request's key was not sealed for this factory: {exc}") from None


def new_request_key(public_pem: str) -> tuple[bytes, str]:
    """(symmetric key, the key sealed to the factory's public key, base64)."""
    public = serialization.load_pem_public_key(public_pem.encode())
    assert isinstance(public, rsa.RSAPublicKey)
    key = Fernet.generate_key()
    return key, base64.b64encode(public.encrypt(key, _OAEP)).decode()


def seal(key: bytes, value: str) -> str:
    return Fernet(key).encrypt(value.encode()).decode()


def open_sealed(key: bytes, sealed: str) -> str:
    try:
        return Fernet(key).decrypt(sealed.encode()).decode()
    except (InvalidToken, ValueError) as exc:
        raise SealError(f"a sealed value does not open with the request's key: {exc!r}") from None
