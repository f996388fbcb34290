"""Entra ID as MSAL sees it: OpenID discovery, the v2.0 token endpoint (client credentials), and
bearer tokens the ARM and Key Vault front ends check.

Tokens are JWTs signed with HMAC-SHA256 under a key kept in the state dir, so they stay valid
across an emulator restart (MSAL caches them in the client).
"""

from __future__ import annotations

import base64
import json
import time
import uuid

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac

TOKEN_LIFETIME = 3600


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Identity:
    def __init__(self, config: dict, base_url: str, signing_key: bytes, audiences: dict[str, str]):
        """audiences maps each accepted token audience to the service it is for ("arm" or "vault")."""
        self.tenant = config["tenant_id"]
        self.client_id = config["client_id"]
        self.client_secret = config["client_secret"]
        self.base_url = base_url
        self.key = signing_key
        self.audiences = audiences

    # --- discovery and token endpoint -----------------------------------------------------

    def openid_configuration(self, tenant: str) -> tuple[int, dict]:
        if tenant.lower() not in (self.tenant, "organizations", "common"):
            return 400, {"error": "invalid_tenant",
                         "error_description": f"AADSTS90002: Tenant '{tenant}' not found."}
        root = f"{self.base_url}/{self.tenant}"
        return 200, {
            "issuer": f"{root}/v2.0",
            "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
            "token_endpoint": f"{root}/oauth2/v2.0/token",
            "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
            "jwks_uri": f"{root}/discovery/v2.0/keys",
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                      "client_secret_basic"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "tenant_region_scope": "EU",
            "cloud_instance_name": "lab.local",
        }

    def token(self, tenant: str, form: dict[str, str]) -> tuple[int, dict]:
        def fail(status: int, error: str, description: str) -> tuple[int, dict]:
            return status, {"error": error, "error_description": description, "error_codes": [],
                            "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
                            "trace_id": str(uuid.uuid4()), "correlation_id": str(uuid.uuid4())}

        if tenant.lower() != self.tenant:
            return fail(400, "invalid_request", f"AADSTS90002: Tenant '{tenant}' not found.")
        if form.get("grant_type") != "client_credentials":
            return fail(400, "unsupported_grant_type", "AADSTS70003: The app requested an unsupported grant type.")
        if form.get("client_id") != self.client_id:
            return fail(400, "unauthorized_client",
                        f"AADSTS700016: Application with identifier '{form.get('client_id')}' was not found.")
        if form.get("client_secret") != self.client_secret:
            return fail(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
        scopes = form.get("scope", "").split()
        resources = [s[: -len("/.default")] for s in scopes if s.endswith("/.default")]
        if len(resources) != 1:
            return fail(400, "invalid_scope", "AADSTS1002012: The provided value for scope is not valid. "
                                               "Client credential flows must have a scope value with /.default.")
        audience = resources[0].rstrip("/")
        if audience not in self.audiences:
            return fail(400, "invalid_resource", f"AADSTS500011: The resource principal named {audience} "
                                                  f"was not found in the tenant named {self.tenant}.")
        now = int(time.time())
        claims = {"aud": audience, "iss": f"{self.base_url}/{self.tenant}/v2.0", "iat": now, "nbf": now,
                  "exp": now + TOKEN_LIFETIME, "tid": self.tenant, "appid": self.client_id,
                  "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, self.client_id)), "ver": "1.0"}
        return 200, {"token_type": "Bearer", "expires_in": TOKEN_LIFETIME, "ext_expires_in": TOKEN_LIFETIME,
                     "access_token": self._sign(claims)}

    # --- tokens -----------------------------------------------------------------------------

    def _mac(self, data: bytes) -> hmac.HMAC:
        mac = hmac.HMAC(self.key, hashes.SHA256())
        mac.update(data)
        return mac

    def _sign(self, claims: dict) -> str:
        head = _b64url(json.dumps({"typ": "JWT", "alg": "HS256"}).encode())
        body = _b64url(json.dumps(claims, separators=(",", ":")).encode())
        return f"{head}.{body}.{_b64url(self._mac(f'{head}.{body}'.encode()).finalize())}"

    @staticmethod
    def principal(authorization: str) -> str:
        """The caller of a request whose token `check` accepted: its object id (else app id)."""
        claims = json.loads(_unb64url(authorization.partition(" ")[2].split(".")[1]))
        return claims.get("oid") or claims.get("appid") or ""

    def check(self, authorization: str | None, service: str) -> tuple[str, str] | None:
        """None if the header holds a valid token for service, else (error code, message) as ARM words it."""
        if not authorization:
            return "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing."
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or token.count(".") != 2:
            return "AuthenticationFailedInvalidHeader", ("Authentication failed. The 'Authorization' header is "
                                                         "provided in an invalid format.")
        head, body, signature = token.split(".")
        try:
            self._mac(f"{head}.{body}".encode()).verify(_unb64url(signature))
            claims = json.loads(_unb64url(body))
        except (InvalidSignature, ValueError):
            return "InvalidAuthenticationToken", "The access token is invalid."
        if claims.get("exp", 0) < time.time():
            return "ExpiredAuthenticationToken", "The access token expiry UTC time is earlier than current UTC time."
        if self.audiences.get(claims.get("aud")) != service:
            return "InvalidAuthenticationTokenAudience", (
                f"The access token has been obtained for wrong audience or resource '{claims.get('aud')}'.")
        if claims.get("tid") != self.tenant:
            return "InvalidAuthenticationTokenTenant", "The access token is from the wrong issuer."
        return None
