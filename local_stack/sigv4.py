"""Checks the SigV4 signature of an ``@connections`` request, as API Gateway does (pure: no I/O).

The signature is recomputed with botocore's own signer over the headers the client says it signed, so
whatever botocore signs (boto3, ``shared.management_api``) verifies. Answers are API Gateway's: 403 with
``MissingAuthenticationTokenException`` (no ``Authorization``), ``UnrecognizedClientException`` (an access
key the stack does not know), ``InvalidSignatureException`` (wrong signature, scope or time).
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass

from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

__all__ = ["MAX_SKEW", "SignatureError", "verify"]

SERVICE = "execute-api"
MAX_SKEW = dt.timedelta(minutes=5)  # AWS refuses a signature whose time is further than this from its own
_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[^/,\s]+)"
    r"/(?P<service>[^/,\s]+)"
    r"/aws4_request,\s*SignedHeaders=(?P<signed>[a-z0-9;-]+),\s*Signature=(?P<signature>[0-9a-f]{64})"
)
_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
    "Access Key and signing method. Consult the service documentation for details."
)


@dataclass(frozen=True)
class SignatureError:
    error_type: str
    message: str


def verify(
    *,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    credentials: Mapping[str, str],
    region: str,
    now: dt.datetime | None = None,
) -> SignatureError | None:
    """``None`` when the request is signed with one of ``credentials`` (access key id -> secret key) for
    ``execute-api`` in ``region`` within :data:`MAX_SKEW` of ``now``; else what API Gateway answers."""
    lowered = {name.lower(): value for name, value in headers.items()}
    authorization = lowered.get("authorization")
    if not authorization:
        return SignatureError("MissingAuthenticationTokenException", "Missing Authentication Token")
    match = _AUTHORIZATION.fullmatch(authorization.strip())
    if match is None:
        return SignatureError("IncompleteSignatureException", "Authorization header is malformed.")
    secret = credentials.get(match["key"])
    if secret is None:
        return SignatureError(
            "UnrecognizedClientException", "The security token included in the request is invalid."
        )
    if match["service"] != SERVICE or match["region"] != region:
        return SignatureError(
            "InvalidSignatureException",
            f"Credential should be scoped to a valid region and service ({region}/{SERVICE}), "
            f"not {match['region']}/{match['service']}.",
        )
    stamp = lowered.get("x-amz-date", "")
    try:
        signed_at = dt.datetime.strptime(stamp, SIGV4_TIMESTAMP).replace(tzinfo=dt.UTC)
    except ValueError:
        return SignatureError("IncompleteSignatureException", "X-Amz-Date is missing or malformed.")
    now = now or dt.datetime.now(dt.UTC)
    if abs(now - signed_at) > MAX_SKEW or stamp[:8] != match["date"]:
        return SignatureError(
            "InvalidSignatureException",
            f"Signature expired: {stamp} is outside {MAX_SKEW} of the server time.",
        )
    signed = match["signed"].split(";")
    if "host" not in signed or any(name not in lowered for name in signed):
        return SignatureError("InvalidSignatureException", _MISMATCH)
    request = AWSRequest(method=method, url=url, data=body, headers={name: lowered[name] for name in signed})
    request.context["timestamp"] = stamp
    signer = SigV4Auth(Credentials(match["key"], secret), SERVICE, region)
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    if not hmac.compare_digest(expected, match["signature"]):
        return SignatureError("InvalidSignatureException", _MISMATCH)
    return None
