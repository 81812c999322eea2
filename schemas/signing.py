"""What a request signature covers: the request's canonical bytes (schemas/README.md, "Signed
requests").

The canonical bytes are RFC 8785 (JSON Canonicalization Scheme) applied to the request's JSON
object without its `signature` member: members sorted by their UTF-16 code units, no
whitespace, ECMAScript number forms (60.0 is written 60), minimal string escapes. Any producer,
in any language, can build them from the object it is about to send, and a verifier from the
object it received, whatever whitespace, member order or escapes the wire used in between.
`rfc8785` is the kept implementation of the RFC (Trail of Bits); writing one here would be a
second definition of a standard.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import rfc8785

from schemas.errors import SchemaError

# The SSHSIG namespace of request signatures: `ssh-keygen -Y sign -n fleetrun`. A signature
# made for another purpose (git commits, files) never verifies as a request.
SIGNATURE_NAMESPACE: Final = "fleetrun"
SIGNATURE_FIELD: Final = "signature"


def canonical_bytes(document: Mapping[str, Any]) -> bytes:
    """The bytes a request signature covers: RFC 8785 of `document` without `signature`."""
    unsigned = {k: v for k, v in document.items() if k != SIGNATURE_FIELD}
    try:
        return rfc8785.dumps(unsigned)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        # Integers beyond 2**53 or non-finite numbers have no canonical form (RFC 8785 §3.2.2.3).
        raise SchemaError("", f"has no RFC 8785 canonical form: {exc}", "json") from None
