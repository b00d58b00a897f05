"""Signed receipts (``statsToken``): RS256 JWTs made with PyJWT.

Rocket.Chat stores the ``statsToken`` string it gets back and reads nothing
else of the answer (``sendUsageReport.ts``). Our receipt's payload:

    {"iss": <issuer>, "iat": <unix seconds>, "workspaceId": <uuid>,
     "recordId": <uuid of the stored report, made by the collector>,
     "timestamp": <the record's createdAt, ISO 8601 UTC>}

``recordId`` is the collector's own id, never the workspace's ``_id``.
The signing key is an RSA 2048 private key in PEM, generated into the data
directory on first start (or configured with ``COLLECTOR_SIGNING_KEY_FILE``);
its public half is served as a JWK Set at ``/.well-known/jwks.json``, with a
``kid`` derived from the key (RFC 7638 thumbprint).
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from uuid import UUID

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ALGORITHM = "RS256"


class ReceiptSigner:
    """Signs receipts with one RSA key and publishes its public JWK."""

    def __init__(self, private_key: rsa.RSAPrivateKey, issuer: str):
        self._key = private_key
        self.issuer = issuer
        jwk = RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
        self.kid = _thumbprint(jwk)
        self.jwk = {**jwk, "kid": self.kid, "use": "sig", "alg": ALGORITHM}

    @classmethod
    def from_file(cls, path: Path, issuer: str) -> "ReceiptSigner":
        """Load the PEM key at ``path``, generating it (mode 0600) when missing."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{path} is not an RSA private key")
        return cls(key, issuer)

    def sign(self, workspace_id: UUID, record_id: UUID, created_at: datetime, now: datetime) -> str:
        """The receipt JWT for one stored report (see module docstring for the payload)."""
        payload = {
            "iss": self.issuer,
            "iat": int(now.timestamp()),
            "workspaceId": str(workspace_id),
            "recordId": str(record_id),
            "timestamp": created_at.isoformat().replace("+00:00", "Z"),
        }
        return jwt.encode(payload, self._key, algorithm=ALGORITHM, headers={"kid": self.kid})

    def jwks(self) -> dict:
        """The JWK Set with the public key: ``{"keys": [jwk]}``."""
        return {"keys": [self.jwk]}


def _thumbprint(jwk: dict) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url) of an RSA public JWK."""
    import base64
    import hashlib
    import json

    canonical = json.dumps({k: jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
