"""Every bound of the wire contract, named once.

The JSON Schema files repeat these numbers (JSON has no imports); tests/unit/test_schemas_files.py
checks that each file agrees with this module, so neither can drift.
"""

from __future__ import annotations

from typing import Final

# Largest integer that JavaScript (and every IEEE-754 double) holds exactly: counters and offsets
# stay below it so consumers in any language read the same number we wrote.
MAX_SAFE_INTEGER: Final = 2**53 - 1

# --- request -----------------------------------------------------------------------------------
# 16 Ki code points is at most 64 KiB of UTF-8, well under Linux's 128 KiB limit for one
# argument (MAX_ARG_STRLEN), which is what `sh -c COMMAND` receives on the host.
MAX_COMMAND_CHARS: Final = 16_384
MAX_PRINCIPAL_CHARS: Final = 256
MAX_TARGET_EXPRESSIONS: Final = 1_000
MAX_TARGET_EXPRESSION_CHARS: Final = 1_024
# Hosts in one request after expansion. A request is one unit of work with one completed status;
# past the collector's shard size it is split into shards that every collector shares.
MAX_TARGETS: Final = 100_000
MAX_HOST_CHARS: Final = 253  # a DNS name
MAX_ENV_VARS: Final = 64
MAX_ENV_NAME_CHARS: Final = 128
MAX_ENV_VALUE_CHARS: Final = 8_192
ENV_NAME_PATTERN: Final = "^[A-Z_][A-Z0-9_]*$"
MIN_TIMEOUT_S: Final = 0.1
MAX_TIMEOUT_S: Final = 86_400  # one day
DEFAULT_TIMEOUT_S: Final = 60.0
MIN_CONNECT_TIMEOUT_S: Final = 0.1
MAX_CONNECT_TIMEOUT_S: Final = 300
DEFAULT_CONNECT_TIMEOUT_S: Final = 10.0
MAX_CONCURRENCY: Final = 10_000
DEFAULT_CONCURRENCY: Final = 100
MAX_ERRORS_PERCENT_PATTERN: Final = "^(100|[1-9]?[0-9])%$"
# Captured bytes per stream. The default keeps a result with two full streams (base64: 4/3) well
# under Kafka's default 1 MB message limit; the maximum needs topics sized for it (README).
MAX_OUTPUT_BYTES: Final = 1_048_576
DEFAULT_MAX_OUTPUT_BYTES: Final = 65_536
MAX_RETRIES: Final = 10
DEFAULT_RETRIES: Final = 0
MAX_LABELS: Final = 32
MAX_LABEL_KEY_CHARS: Final = 63
MAX_LABEL_VALUE_CHARS: Final = 256
# An armored SSHSIG of an RSA-8192 key is about 1.6 KiB; room for certificates and comments.
MAX_SIGNATURE_CHARS: Final = 8_192
MAX_TEMPLATE_NAME_CHARS: Final = 64
TEMPLATE_NAME_PATTERN: Final = "^[a-z][a-z0-9_]*$"
MAX_PARAMS: Final = 32
MAX_PARAM_VALUE_CHARS: Final = 1_024

# --- result, status, dead letter ----------------------------------------------------------------
MAX_USER_CHARS: Final = 64
MAX_ATTEMPT: Final = 100
MAX_EXIT_STATUS: Final = 2**32 - 1  # SSH carries exit-status as uint32 (RFC 4254 §6.10)
# Characters of the wire string for one stream: base64 of MAX_OUTPUT_BYTES (text is never longer).
MAX_OUTPUT_WIRE_CHARS: Final = 4 * ((MAX_OUTPUT_BYTES + 2) // 3)
MAX_INSTANCE_CHARS: Final = 128
MAX_ERROR_TYPE_CHARS: Final = 128
MAX_ERROR_MESSAGE_CHARS: Final = 4_096
MAX_REASON_CHARS: Final = 4_096
# A cancel's reason: short enough that "request cancelled by <principal>: <reason>" stays well
# inside an error message (MAX_ERROR_MESSAGE_CHARS) and a rejected status's reason.
MAX_CANCEL_REASON_CHARS: Final = 1_024
MAX_PARTITION: Final = 2**31 - 1
# An OpenSSH fingerprint ("SHA256:" + 43 base64 characters), with room for other hashes.
MAX_FINGERPRINT_CHARS: Final = 128
MAX_POLICY_RULE_CHARS: Final = 128


def max_result_message_bytes(max_output_bytes: int = MAX_OUTPUT_BYTES) -> int:
    """Upper bound of one encoded result, for sizing Kafka's max.message.bytes."""
    # Worst case per stream: text of control characters, each escaped as \u00XX (6 bytes).
    streams = 2 * 6 * max_output_bytes
    labels = MAX_LABELS * (MAX_LABEL_KEY_CHARS + MAX_LABEL_VALUE_CHARS) * 6
    error = (MAX_ERROR_TYPE_CHARS + MAX_ERROR_MESSAGE_CHARS) * 6
    fixed = 4_096  # every other field, names and punctuation included
    people = (MAX_USER_CHARS + MAX_INSTANCE_CHARS) * 6
    return streams + labels + error + people + MAX_HOST_CHARS + fixed
