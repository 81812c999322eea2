"""Another team's consumer: read fleetrun results with plain aiokafka + orjson.

No fleetrun import: schemas/result.schema.json is the contract. Output bytes come as text
(`*_encoding: "utf-8"`) or base64 (`"base64"`, when the bytes are not UTF-8 or hold NUL).
Usage:

    python examples/consume_results.py --bootstrap 127.0.0.1:19092 --request-id ID --count 3 \
        --user team --password-file STACK/kafka/users/team.password --ca-file STACK/kafka/tls/ca.pem

Prints one line per result: host, status, exit status, first line of stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import ssl
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer


def output_bytes(result: dict[str, Any], stream: str) -> bytes:
    """The captured bytes of `stream` ("stdout" or "stderr"), whatever their wire encoding."""
    text = result[stream]
    if result.get(f"{stream}_encoding") == "base64":
        return base64.b64decode(text)
    return str(text).encode()


def describe(result: dict[str, Any]) -> str:
    """One line for a result; ignores fields it does not know, as the contract asks."""
    first = output_bytes(result, "stdout").decode("utf-8", "replace").partition("\n")[0]
    return f"{result['host']} {result['status']} exit={result['exit_status']} {first}"


async def consume(
    bootstrap: str,
    topic: str,
    request_id: str | None,
    count: int,
    timeout_s: float,
    secured: dict[str, Any],
) -> list[dict[str, Any]]:
    """Read results from the beginning until `count` match `request_id` (or the deadline)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,  # a real team would use its own group id and commit offsets
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **secured,
    )
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(timeout_s):
            while len(found) < count:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for record in records:
                        doc = orjson.loads(record.value)
                        if doc.get("schema", "").partition("/")[0] != "fleetrun.result":
                            continue
                        if not doc["schema"].endswith("/1"):
                            continue  # a new major version: this consumer does not know it
                        if request_id is None or doc["request_id"] == request_id:
                            found.append(doc)
    except TimeoutError:
        pass
    finally:
        await consumer.stop()
    return found


def add_security_options(parser: argparse.ArgumentParser) -> None:
    """SASL/SCRAM over TLS, as a secured fleetrun Kafka asks (the local stack's and compose's)."""
    parser.add_argument("--user", help="SASL user; without it the connection is plaintext")
    parser.add_argument("--password-file", help="file holding the SASL password")
    parser.add_argument("--ca-file", help="PEM CA that signed the broker's certificate")
    parser.add_argument("--mechanism", default="SCRAM-SHA-512")


def security(args: argparse.Namespace) -> dict[str, Any]:
    """aiokafka's keyword arguments for the options above."""
    if not args.user:
        return {}
    with open(args.password_file, encoding="utf-8") as f:
        password = f.readline().strip()
    return {
        "security_protocol": "SASL_SSL",
        "ssl_context": ssl.create_default_context(cafile=args.ca_file),
        "sasl_mechanism": args.mechanism,
        "sasl_plain_username": args.user,
        "sasl_plain_password": password,
    }


def main() -> None:
    """Print the results of one request (or the first N results of any)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    parser.add_argument("--topic-prefix", default="fleetrun.")
    parser.add_argument("--request-id")
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--timeout-s", type=float, default=60.0)
    add_security_options(parser)
    args = parser.parse_args()
    results = asyncio.run(
        consume(
            args.bootstrap,
            args.topic_prefix + "results",
            args.request_id,
            args.count,
            args.timeout_s,
            security(args),
        )
    )
    for result in results:
        print(describe(result))
    raise SystemExit(0 if len(results) >= args.count else 1)


if __name__ == "__main__":
    main()
