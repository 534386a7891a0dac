"""Bearer-token authentication: an HS256 (by default) JWT whose ``sub`` is the user id.

    token = create_access_token("alice", secret="...", expires_in=3600)
    # Authorization: Bearer <token>

Every failure (no header, another scheme, a malformed, expired or wrongly signed token,
no usable ``sub``) is a 401 with ``WWW-Authenticate: Bearer``, in the API's error shape.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import jwt
from fastapi import Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from convostore.errors import ConfigurationError, ValidationError
from convostore.schemas import validate_user_id
from convostore.server.errors import ApiError
from convostore.types import utcnow

__all__ = [
    "bearer_scheme",
    "check_algorithm",
    "check_secret",
    "create_access_token",
    "decode_user",
    "user_from",
]

#: Documents the scheme in OpenAPI; the checks themselves are in :func:`user_from`.
bearer_scheme = HTTPBearer(
    auto_error=False,
    description="A JWT signed with JWT_SECRET_KEY; `sub` is the user id. "
    "Mint one with `convostore token --user ID`.",
)

# Only HMAC algorithms (a shared secret verifies them), with the minimum key size in bytes
# that RFC 7518 section 3.2 requires: at least the size of the hash output.
SUPPORTED_ALGORITHMS = {"HS256": 32, "HS384": 48, "HS512": 64}


def check_algorithm(algorithm: str) -> str:
    """Refuse algorithms a shared secret cannot verify (and ``none``)."""
    if algorithm not in SUPPORTED_ALGORITHMS:
        raise ConfigurationError(
            f"JWT_ALGORITHM: {algorithm!r} is not supported; use one of "
            + ", ".join(sorted(SUPPORTED_ALGORITHMS))
        )
    return algorithm


def check_secret(secret: str, algorithm: str) -> str:
    """Refuse a secret shorter than the algorithm needs (RFC 7518: at least the hash size)."""
    need = SUPPORTED_ALGORITHMS[check_algorithm(algorithm)]
    if len(secret.encode()) < need:
        raise ConfigurationError(
            f"JWT_SECRET_KEY: must be at least {need} bytes for {algorithm} "
            f"(got {len(secret.encode())}); generate one with `openssl rand -hex 32`"
        )
    return secret


def create_access_token(
    user_id: str,
    *,
    secret: str,
    algorithm: str = "HS256",
    expires_in: int | None = 3600,
    extra_claims: dict[str, Any] | None = None,
) -> str:
    """A signed token for ``user_id``; ``expires_in`` seconds (``None``: no expiry)."""
    validate_user_id(user_id)
    now = utcnow()
    claims: dict[str, Any] = {"sub": user_id, "iat": now, **(extra_claims or {})}
    if expires_in is not None:
        if expires_in <= 0:
            raise ValidationError("expires_in", "must be > 0 seconds")
        claims["exp"] = now + timedelta(seconds=expires_in)
    return jwt.encode(claims, check_secret(secret, algorithm), algorithm=algorithm)


def _unauthorized(message: str, error: str = "invalid_token") -> ApiError:
    header = "Bearer" if error == "" else f'Bearer error="{error}"'
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": header})


def decode_user(token: str, *, secret: str, algorithm: str) -> str:
    """Verify ``token`` and return its ``sub``; raise a 401 ``ApiError`` otherwise."""
    try:
        claims = jwt.decode(token, secret, algorithms=[algorithm], options={"require": ["sub"]})
    except jwt.ExpiredSignatureError:
        raise _unauthorized("token has expired") from None
    except jwt.InvalidSignatureError:
        raise _unauthorized("token signature is not valid") from None
    except jwt.MissingRequiredClaimError:
        raise _unauthorized("token has no 'sub' claim (the user id)") from None
    except jwt.InvalidTokenError as exc:
        raise _unauthorized(f"token is not valid ({exc})") from None
    sub = claims.get("sub")
    try:
        return validate_user_id(sub if isinstance(sub, str) else "")
    except ValidationError as exc:
        raise _unauthorized(f"token 'sub' claim {exc.rule}") from None


def user_from(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str:
    """The authenticated user id of ``request`` (the header is parsed here, strictly)."""
    header = request.headers.get("authorization")
    if not header:
        raise _unauthorized("missing Authorization header (expected 'Bearer <token>')", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or credentials is None:
        raise _unauthorized("Authorization header must use the Bearer scheme", "")
    settings = request.app.state.settings
    return decode_user(
        token.strip(),
        secret=settings.jwt_secret_key.get_secret_value(),
        algorithm=settings.jwt_algorithm,
    )
