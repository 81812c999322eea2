"""The contract's field types: each bound of the schema files once, in Python.

The JSON Schema files are what other teams implement; these types say the same: lengths, ranges
and enumerations as msgspec `Meta` (checked in C while decoding), patterns as `Pattern` markers
that the records check (schemas.patterns says why). tests/unit/test_schemas_files.py checks that
every bound and pattern here equals the schema files', and the differential test checks that the
records accept exactly what `jsonschema` accepts, minus the documented extra rules.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal, get_args

from msgspec import Meta

from schemas import limits
from schemas.environment import DENIED_ENV_MESSAGE, DENIED_ENV_PATTERN
from schemas.patterns import NO_NUL_SOURCE, NotPattern, Pattern

ResultStatus = Literal[
    "ok",
    "failed",
    "timeout",
    "unreachable",
    "auth_failed",
    "host_key_mismatch",
    "skipped",
    "expired",
    "error",
]
RESULT_STATUSES: Final[tuple[ResultStatus, ...]] = get_args(ResultStatus)
StatusState = Literal["accepted", "rejected", "completed"]
STATUS_STATES: Final[tuple[StatusState, ...]] = get_args(StatusState)
DeadLetterStage = Literal["collector", "sink"]
DEAD_LETTER_STAGES: Final[tuple[DeadLetterStage, ...]] = get_args(DeadLetterStage)
OutputEncoding = Literal["utf-8", "base64"]
OUTPUT_ENCODINGS: Final[tuple[OutputEncoding, ...]] = get_args(OutputEncoding)

# --- patterns, as the schema files write them ---------------------------------------------------

NO_NUL = Pattern(NO_NUL_SOURCE, "must not contain NUL characters (U+0000)")
UUID = Pattern(
    "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
    "must be a UUID in lowercase canonical form, e.g. 0b6e9c1a-5f0e-4a57-9d1c-2f2b7c8e4a10",
)
TIMESTAMP = Pattern(
    "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    "(\\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$",
    "must be an RFC 3339 date-time with a time zone, e.g. 2024-05-01T12:00:00Z",
    remember=False,
)
# The command's second pattern (a schema `allOf`): checked by Request itself.
NOT_BLANK = Pattern("[^ \\t\\n\\r]", "is blank; give the shell command to run")
TARGET = Pattern(
    "^[A-Za-z0-9_.,:@!&\\[\\]/-]+$",
    "may only contain letters, digits and _ . , : @ ! & [ ] / - (no spaces)",
)
ENV_NAME = Pattern(
    limits.ENV_NAME_PATTERN,
    "is not a valid environment variable name: use upper-case letters, digits and _ "
    "([A-Z_][A-Z0-9_]*)",
)
# Names that change how programs load or start (schemas.environment says which and why).
ENV_NOT_DENIED = NotPattern(DENIED_ENV_PATTERN, DENIED_ENV_MESSAGE)
LABEL_NAME = Pattern(
    "^[A-Za-z0-9][A-Za-z0-9_./-]*$",
    "is not a valid label name: start with a letter or digit, then letters, digits, _ . / - "
    "(at most 63)",
)
HOST = Pattern(
    "^[A-Za-z0-9:][A-Za-z0-9._:-]*$",
    "must be a host name or IP address (letters, digits, . _ : -)",
)
SIGNAL = Pattern("^[A-Za-z0-9@._+-]+$", "must be a signal name such as KILL or TERM, or null")
SHA256 = Pattern("^[0-9a-f]{64}$", "must be a SHA-256 digest: 64 lowercase hex digits")
TOPIC = Pattern("^[A-Za-z0-9._-]+$", "must be a Kafka topic name (letters, digits, . _ -)")
PERCENT = Pattern(
    limits.MAX_ERRORS_PERCENT_PATTERN,
    'must be a host count, a percentage from 0% to 100% such as "10%", or null',
)
TEMPLATE_NAME = Pattern(
    limits.TEMPLATE_NAME_PATTERN,
    "is not a valid template or parameter name: lower-case letters, digits and _, starting "
    "with a letter ([a-z][a-z0-9_]*)",
)
BASE64_MESSAGE: Final = "must be base64 (RFC 4648 standard alphabet, padded, no line breaks)"


# --- field types ------------------------------------------------------------------------------

Uuid = Annotated[str, UUID]
# Timestamps stay text in records, as on the wire: msgspec's own datetime type also accepts
# lowercase t/z, a space, "+0200" and any number of fraction digits, which the contract refuses.
# schemas.timestamps parses them (and the records' checks prove the calendar date is real).
Timestamp = Annotated[str, TIMESTAMP]
Principal = Annotated[str, Meta(min_length=1, max_length=limits.MAX_PRINCIPAL_CHARS), NO_NUL]
Command = Annotated[str, Meta(min_length=1, max_length=limits.MAX_COMMAND_CHARS), NO_NUL]
TargetExpression = Annotated[
    str, Meta(min_length=1, max_length=limits.MAX_TARGET_EXPRESSION_CHARS), TARGET
]
SubmittedTarget = Annotated[
    str, Meta(min_length=1, max_length=limits.MAX_TARGET_EXPRESSION_CHARS), NO_NUL
]
EnvName = Annotated[str, Meta(max_length=limits.MAX_ENV_NAME_CHARS), ENV_NAME, ENV_NOT_DENIED]
EnvValue = Annotated[str, Meta(max_length=limits.MAX_ENV_VALUE_CHARS), NO_NUL]
Env = Annotated[dict[EnvName, EnvValue], Meta(max_length=limits.MAX_ENV_VARS)]
LabelName = Annotated[str, Meta(max_length=limits.MAX_LABEL_KEY_CHARS), LABEL_NAME]
LabelValue = Annotated[str, Meta(max_length=limits.MAX_LABEL_VALUE_CHARS), NO_NUL]
Labels = Annotated[dict[LabelName, LabelValue], Meta(max_length=limits.MAX_LABELS)]
TimeoutS = Annotated[float, Meta(ge=limits.MIN_TIMEOUT_S, le=limits.MAX_TIMEOUT_S)]
ConnectTimeoutS = Annotated[
    float, Meta(ge=limits.MIN_CONNECT_TIMEOUT_S, le=limits.MAX_CONNECT_TIMEOUT_S)
]
Concurrency = Annotated[int, Meta(ge=1, le=limits.MAX_CONCURRENCY)]
ErrorBudget = Annotated[int, Meta(ge=0, le=limits.MAX_TARGETS)] | Annotated[str, PERCENT] | None
MaxOutputBytes = Annotated[int, Meta(ge=0, le=limits.MAX_OUTPUT_BYTES)]
Retries = Annotated[int, Meta(ge=0, le=limits.MAX_RETRIES)]

Host = Annotated[str, Meta(min_length=1, max_length=limits.MAX_HOST_CHARS), HOST]
Port = Annotated[int, Meta(ge=1, le=65535)]
User = Annotated[str, Meta(min_length=1, max_length=limits.MAX_USER_CHARS), NO_NUL]
Attempt = Annotated[int, Meta(ge=1, le=limits.MAX_ATTEMPT)]
ExitStatus = Annotated[int, Meta(ge=0, le=limits.MAX_EXIT_STATUS)]
Signal = Annotated[str, Meta(min_length=1, max_length=64), SIGNAL]
# One captured stream as the wire holds it; what it must contain depends on its encoding, which
# Result checks (text: no NUL; base64: decodes; both: sizes).
OutputText = Annotated[str, Meta(max_length=limits.MAX_OUTPUT_WIRE_CHARS)]
ByteCount = Annotated[int, Meta(ge=0, le=limits.MAX_SAFE_INTEGER)]
Sha256 = Annotated[str, SHA256]
Milliseconds = Annotated[int, Meta(ge=0, le=limits.MAX_SAFE_INTEGER)]
Instance = Annotated[str, Meta(min_length=1, max_length=limits.MAX_INSTANCE_CHARS), NO_NUL]
ErrorType = Annotated[str, Meta(min_length=1, max_length=limits.MAX_ERROR_TYPE_CHARS), NO_NUL]
ErrorMessage = Annotated[str, Meta(max_length=limits.MAX_ERROR_MESSAGE_CHARS), NO_NUL]
Reason = Annotated[str, Meta(min_length=1, max_length=limits.MAX_REASON_CHARS), NO_NUL]
CancelReason = Annotated[str, Meta(min_length=1, max_length=limits.MAX_CANCEL_REASON_CHARS), NO_NUL]
HostCount = Annotated[int, Meta(ge=0, le=limits.MAX_TARGETS)]
Topic = Annotated[str, Meta(min_length=1, max_length=249), TOPIC]
Partition = Annotated[int, Meta(ge=0, le=limits.MAX_PARTITION)]
Offset = Annotated[int, Meta(ge=0, le=limits.MAX_SAFE_INTEGER)]
# Signed requests, templates and their audit (schemas.signing, schemas/README.md "Signed requests").
Signature = Annotated[str, Meta(min_length=1, max_length=limits.MAX_SIGNATURE_CHARS), NO_NUL]
TemplateName = Annotated[
    str, Meta(min_length=1, max_length=limits.MAX_TEMPLATE_NAME_CHARS), TEMPLATE_NAME
]
ParamName = Annotated[str, Meta(max_length=limits.MAX_TEMPLATE_NAME_CHARS), TEMPLATE_NAME]
ParamValue = Annotated[str, Meta(max_length=limits.MAX_PARAM_VALUE_CHARS), NO_NUL]
Params = Annotated[dict[ParamName, ParamValue], Meta(max_length=limits.MAX_PARAMS)]
Fingerprint = Annotated[str, Meta(min_length=1, max_length=limits.MAX_FINGERPRINT_CHARS), NO_NUL]
PolicyRule = Annotated[str, Meta(min_length=1, max_length=limits.MAX_POLICY_RULE_CHARS), NO_NUL]
