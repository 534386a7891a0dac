"""Authentication: JWTs (a shared secret, or your identity provider's JWKS) and API keys.

    token = create_access_token("alice", secret="...", expires_in=3600)
    # Authorization: Bearer <token>          (or: Authorization: Bearer csk_... an API key)

A JWT is verified with the key its algorithm is configured for: ``JWT_ALGORITHM`` (HS*)
with ``JWT_SECRET_KEY``, or one of ``CONVOSTORE_JWKS_ALGORITHMS`` (RS256, ES256, EdDSA)
with the JWKS key named by the token's ``kid``. The algorithms accepted come from the
configuration only: a token's ``alg`` merely picks one of them, so an HS256 token "signed"
with a provider's public key finds no secret to be checked with. ``exp`` is required by
default, a token may live at most ``CONVOSTORE_JWT_MAX_LIFETIME`` seconds, ``nbf`` and
``iat`` are honoured, and ``iss``/``aud`` are checked when configured.

Every failure (no header, another scheme, a malformed, expired or wrongly signed token,
no usable user claim, an unknown or revoked API key) is a 401 with
``WWW-Authenticate: Bearer``, in the API's error shape.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import jwt
from fastapi import Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from convostore.apikeys import ApiKeyInfo, find_key, looks_like_key, mark_used
from convostore.config import Settings
from convostore.errors import ConfigurationError, ValidationError
from convostore.schemas import validate_user_id
from convostore.server.errors import ApiError
from convostore.store import AsyncStore
from convostore.types import utcnow

__all__ = [
    "ACT_FOR_HEADER",
    "Authenticator",
    "Principal",
    "bearer_scheme",
    "check_algorithm",
    "check_secret",
    "create_access_token",
    "decode_user",
    "user_from",
]

log = logging.getLogger("convostore.server.auth")

#: Documents the scheme in OpenAPI; the checks themselves are in :class:`Authenticator`.
bearer_scheme = HTTPBearer(
    auto_error=False,
    description="A JWT (signed with JWT_SECRET_KEY, or by the identity provider whose JWKS "
    "is configured; `sub` is the user id by default), or an API key `csk_...`. "
    "Mint a JWT with `convostore token --user ID`, a key with `convostore keys create`.",
)

#: With an API key that may act for users: the user this request is for.
ACT_FOR_HEADER = "X-Convostore-User"

# Only HMAC algorithms (a shared secret verifies them), with the minimum key size in bytes
# that RFC 7518 section 3.2 requires: at least the size of the hash output.
SUPPORTED_ALGORITHMS = {"HS256": 32, "HS384": 48, "HS512": 64}
#: What a JWKS key may verify (never HS*: a public key is not a secret).
JWKS_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
#: An API key's ``last_used_at`` is written at most this often (reads stay reads).
LAST_USED_EVERY = timedelta(seconds=60)


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


def check_jwks_algorithms(value: str) -> frozenset[str]:
    """``"RS256,ES256"`` -> the set, refusing anything a public key cannot verify."""
    names = frozenset(a.strip() for a in value.split(",") if a.strip())
    bad = sorted(names - JWKS_ALGORITHMS)
    if bad or not names:
        raise ConfigurationError(
            f"CONVOSTORE_JWKS_ALGORITHMS: {', '.join(bad) or 'empty'} not supported; use "
            + ", ".join(sorted(JWKS_ALGORITHMS))
        )
    return names


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request is from: the user it acts for and, with an API key, the key."""

    user_id: str
    key: ApiKeyInfo | None = None


class TokenVerifier:
    """Checks JWTs as the settings say; built once per app (it holds the JWKS cache)."""

    def __init__(self, settings: Settings) -> None:
        secret = settings.jwt_secret_key.get_secret_value() if settings.jwt_secret_key else ""
        self.secret: str | None = None
        self.hmac_algorithm: str | None = None
        if secret:
            self.hmac_algorithm = check_algorithm(settings.jwt_algorithm)
            self.secret = check_secret(secret, settings.jwt_algorithm)
        self.jwks: jwt.PyJWKClient | None = None
        self.jwks_algorithms: frozenset[str] = frozenset()
        if settings.jwks_url:
            self.jwks_algorithms = check_jwks_algorithms(settings.jwks_algorithms)
            self.jwks = jwt.PyJWKClient(
                settings.jwks_url,
                cache_jwk_set=True,
                lifespan=settings.jwks_cache_seconds,
                cooldown_duration=settings.jwks_refresh_cooldown,
                timeout=10,
            )
        if self.secret is None and self.jwks is None:
            raise ConfigurationError(
                "JWT_SECRET_KEY is not set (nor CONVOSTORE_JWKS_URL): the server will not "
                "start without a way to verify tokens (for local development run "
                "`convostore serve --dev`)"
            )
        self.issuer = settings.jwt_issuer
        self.audience = settings.jwt_audience
        self.user_claim = settings.jwt_user_claim
        self.leeway = settings.jwt_leeway
        self.require_exp = settings.jwt_require_exp
        self.max_lifetime = settings.jwt_max_lifetime

    async def user(self, token: str) -> str:
        """Verify ``token`` and return its user id; raise a 401 ``ApiError`` otherwise."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise _unauthorized(f"token is not valid ({exc})") from None
        alg = header.get("alg")
        key: Any
        if self.secret is not None and alg == self.hmac_algorithm:
            key = self.secret
        elif self.jwks is not None and isinstance(alg, str) and alg in self.jwks_algorithms:
            key = await self._jwk(header.get("kid"))
        else:
            raise _unauthorized(f"token is not valid (algorithm {alg!r} is not accepted)")
        return self.decode(token, key, str(alg))

    async def _jwk(self, kid: object) -> jwt.PyJWK:
        assert self.jwks is not None
        if not isinstance(kid, str) or not kid:
            raise _unauthorized("token has no 'kid' header (which JWKS key signed it)")
        cached = self.jwks.jwk_set_cache.get() if self.jwks.jwk_set_cache else None
        for candidate in cached.keys if cached is not None else ():
            if candidate.key_id == kid and candidate.public_key_use in ("sig", None):
                return candidate
        # Not cached (first use, expired, or a new kid after a rotation): PyJWKClient
        # fetches, at most once per cooldown for unknown kids. It is blocking: in a thread.
        try:
            return await asyncio.to_thread(self.jwks.get_signing_key, kid)
        except jwt.PyJWKClientConnectionError as exc:
            log.warning("cannot fetch the JWKS: %s", exc)
            raise ApiError(
                503, "unavailable", "cannot fetch the identity provider's keys (JWKS)"
            ) from None
        except jwt.PyJWKClientError:
            raise _unauthorized(f"token signed by an unknown key (kid {kid!r})") from None
        except jwt.PyJWTError as exc:  # a JWKS that is not one
            log.warning("unusable JWKS: %s", exc)
            raise ApiError(503, "unavailable", "the identity provider's JWKS is unusable") from None

    def decode(self, token: str, key: Any, alg: str) -> str:
        """Check signature and claims with ``key`` for algorithm ``alg``; the user id."""
        required = [self.user_claim] + (["exp"] if self.require_exp else [])
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                issuer=self.issuer,
                audience=self.audience,
                leeway=self.leeway,
                options={"require": required},
            )
        except jwt.ExpiredSignatureError:
            raise _unauthorized("token has expired") from None
        except jwt.InvalidSignatureError:
            raise _unauthorized("token signature is not valid") from None
        except jwt.MissingRequiredClaimError as exc:
            what = " (the user id)" if exc.claim == self.user_claim else ""
            raise _unauthorized(f"token has no {exc.claim!r} claim{what}") from None
        except jwt.InvalidAudienceError:
            raise _unauthorized("token 'aud' claim is not this service's audience") from None
        except jwt.InvalidIssuerError:
            raise _unauthorized("token 'iss' claim is not the configured issuer") from None
        except jwt.ImmatureSignatureError:
            raise _unauthorized("token is not valid yet ('nbf' or 'iat' in the future)") from None
        except (jwt.InvalidTokenError, TypeError, ValueError) as exc:
            raise _unauthorized(f"token is not valid ({exc})") from None
        self._check_lifetime(claims)
        value = claims.get(self.user_claim)
        try:
            return validate_user_id(value if isinstance(value, str) else "")
        except ValidationError as exc:
            raise _unauthorized(f"token {self.user_claim!r} claim {exc.rule}") from None

    def _check_lifetime(self, claims: dict[str, Any]) -> None:
        exp = claims.get("exp")
        if exp is None:
            return
        now = utcnow().timestamp()
        iat = claims.get("iat")
        start = min(now, float(iat)) if isinstance(iat, int | float) else now
        if float(exp) - start > self.max_lifetime + self.leeway:
            raise _unauthorized(
                f"token lives too long (more than {self.max_lifetime} seconds; "
                "CONVOSTORE_JWT_MAX_LIFETIME)"
            )


def decode_user(token: str, *, secret: str, algorithm: str) -> str:
    """Verify an HS* ``token`` with default checks and return its ``sub`` (or a 401)."""
    verifier = TokenVerifier(Settings(jwt_secret_key=secret, jwt_algorithm=algorithm))
    return verifier.decode(token, secret, algorithm)


def _credential(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise _unauthorized("missing Authorization header (expected 'Bearer <token>')", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or credentials is None:
        raise _unauthorized("Authorization header must use the Bearer scheme", "")
    return token.strip()


class Authenticator:
    """Turns a request into a :class:`Principal` (JWT or API key), or an error."""

    def __init__(self, settings: Settings) -> None:
        self.tokens = TokenVerifier(settings)

    async def principal(
        self,
        request: Request,
        credentials: HTTPAuthorizationCredentials | None,
        store: AsyncStore,
    ) -> Principal:
        credential = _credential(request, credentials)
        act_for = request.headers.get(ACT_FOR_HEADER)
        if looks_like_key(credential):
            return await self._key_principal(request, credential, act_for, store)
        user = await self.tokens.user(credential)
        if act_for is not None:
            raise ApiError(
                403, "forbidden", f"{ACT_FOR_HEADER} needs an API key that may act for users"
            )
        return Principal(user)

    async def _key_principal(
        self, request: Request, credential: str, act_for: str | None, store: AsyncStore
    ) -> Principal:
        key = await find_key(store, credential)
        if key is None:
            raise _unauthorized("API key is not valid")
        if key.revoked:
            raise _unauthorized("API key has been revoked")
        now = utcnow()
        if key.last_used_at is None or now - key.last_used_at >= LAST_USED_EVERY:
            await mark_used(store, key.id, now)
        if act_for is None:
            if key.user_id is None:
                raise ValidationError(ACT_FOR_HEADER, "header is required with this API key")
            return Principal(key.user_id, key)
        if not key.can_act_for_users:
            raise ApiError(
                403, "forbidden", f"this API key may not act for users ({ACT_FOR_HEADER})"
            )
        user = validate_user_id_header(act_for)
        log.info(
            "API key %r (id %s) acting for user %r: %s %s",
            key.label,
            key.id,
            user,
            request.method,
            request.url.path,
        )
        return Principal(user, key)


def validate_user_id_header(value: str) -> str:
    try:
        return validate_user_id(value)
    except ValidationError as exc:
        raise ValidationError(ACT_FOR_HEADER, exc.rule) from None


async def user_from(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str:
    """The authenticated user id of ``request`` (JWT or API key; the header parsed strictly)."""
    authenticator: Authenticator = request.app.state.authenticator
    principal = await authenticator.principal(request, credentials, request.app.state.store)
    return principal.user_id
