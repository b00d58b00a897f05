"""Signed receipts (``statsToken``): ES256 JWTs made with PyJWT.

Rocket.Chat stores the ``statsToken`` string it gets back from any JSON
answer, whatever the HTTP status (``sendUsageReport.ts``), and VERIFIES it: on
a workspace without a valid licence, ``AirGappedRestriction``
(``ee/packages/license/src/AirGappedRestriction.ts``) checks the last stored
token with ``decryptStatsToken`` (``ee/packages/license/src/token.ts``:
``@rocket.chat/jwt`` ``verify``, i.e. jose 4 ``importSPKI(key, 'RS256')`` then
``jwtVerify``) against the public key in ``PUBLIC_STATS_KEY_V2`` (base64 of an
SPKI PEM: ``ReceiptSigner.rocketchat_public_key``), then counts whole days
since the payload's ``timestamp``: 0-2 nothing, 3-9 a warning, 10 or more the
workspace turns read-only; a missing or unverifiable token restricts at once.
Hence only 200 answers carry a ``statsToken``, and our receipt's payload is:

    {"iss": <issuer>, "iat": <unix seconds>, "workspaceId": <uuid>,
     "recordId": <uuid of the stored report, made by the collector>,
     "timestamp": <when the collector first accepted the record, RFC 3339 UTC
                   with milliseconds, e.g. "2026-12-01T21:41:31.123Z">}

``timestamp`` is the acceptance time (as Rocket.Chat's own collector stamps
its receive time), never the record's ``createdAt``: a workspace with a wrong
clock, or a record made days before it could be sent, must not get a receipt
that already reads as days old. The receipt is signed once, when the record
is stored, and stored with it: a resend (duplicate) gets the byte-identical
receipt. ``recordId`` is the collector's own id, never the workspace's ``_id``.

The signing key is an ECDSA P-256 private key in PEM (algorithm ES256),
generated into the data directory on first start (or configured with
``COLLECTOR_SIGNING_KEY_FILE``). ES256 signs in ~40 us where RS256 with
RSA-2048 took ~260 us: at thousands of reports/s RSA signing was the largest
single cost. An existing RSA key file is still accepted and signs RS256, so
a deployment switches by moving its old key away. The public half is served
as a JWK Set at ``/.well-known/jwks.json`` with ``alg`` and a ``kid`` derived
from the key (RFC 7638 thumbprint).
"""

from __future__ import annotations

import base64
import hashlib
import os
from datetime import datetime, timezone
from pathlib import Path
from uuid import UUID

import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ALGORITHM = "ES256"  # for new keys; an RSA key signs RS256

# RFC 7638: the required members of the public JWK, per key type.
_THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n")}


class ReceiptSigner:
    """Signs receipts with one key (EC P-256: ES256, or RSA: RS256) and publishes its public JWK."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, issuer: str):
        self._key = private_key
        self.issuer = issuer
        if isinstance(private_key, ec.EllipticCurvePrivateKey):
            if not isinstance(private_key.curve, ec.SECP256R1):
                raise ValueError("an EC receipt key must be on curve P-256")
            self.algorithm = "ES256"
            jwk = ECAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
        else:
            self.algorithm = "RS256"
            jwk = RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
        self.kid = _thumbprint(jwk)
        self.jwk = {**jwk, "kid": self.kid, "use": "sig", "alg": self.algorithm}
        self._headers = {"kid": self.kid}
        # PyJWS with the payload already serialised (orjson): PyJWT's jwt.encode
        # re-validates the claims and serialises with the json module, ~14 us
        # of a ~64 us receipt (issue 15 profile).
        self._jws = jwt.PyJWS(algorithms=[self.algorithm])

    @classmethod
    def from_file(cls, path: Path, issuer: str) -> "ReceiptSigner":
        """Load the PEM key at ``path``, generating a P-256 key (mode 0600) when missing."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            key = ec.generate_private_key(ec.SECP256R1())
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
            raise ValueError(f"{path} is neither an EC P-256 nor an RSA private key")
        return cls(key, issuer)

    def sign(self, workspace_id: UUID, record_id: UUID, accepted_at: datetime) -> str:
        """The receipt JWT for one report stored at ``accepted_at`` (aware; see the
        module docstring for the payload)."""
        utc = accepted_at.astimezone(timezone.utc)
        payload = {
            "iss": self.issuer,
            "iat": int(utc.timestamp()),
            "workspaceId": str(workspace_id),
            "recordId": str(record_id),
            "timestamp": utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z",
        }
        return self._jws.encode(orjson.dumps(payload), self._key, algorithm=self.algorithm, headers=self._headers)

    def public_key_pem(self) -> str:
        """The public key as an SPKI PEM (``-----BEGIN PUBLIC KEY-----``)."""
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def rocketchat_public_key(self) -> str:
        """The value of Rocket.Chat's ``PUBLIC_STATS_KEY_V2``: base64 of the SPKI PEM
        (Rocket.Chat decodes it with ``Buffer.from(key, 'base64')`` before ``importSPKI``)."""
        return base64.b64encode(self.public_key_pem().encode()).decode()

    def jwks(self) -> dict:
        """The JWK Set with the public key: ``{"keys": [jwk]}``."""
        return {"keys": [self.jwk]}


def _thumbprint(jwk: dict) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url) of an EC or RSA public JWK."""
    members = {k: jwk[k] for k in _THUMBPRINT_MEMBERS[jwk["kty"]]}
    canonical = orjson.dumps(members, option=orjson.OPT_SORT_KEYS)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()
