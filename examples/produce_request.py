"""Another team's producer: submit a fleetrun command request with plain aiokafka + orjson.

It deliberately imports nothing from fleetrun: the contract (schemas/request.schema.json) is all
a producer needs. Usage:

    python examples/produce_request.py --bootstrap 127.0.0.1:19092 -t @demo 'uname -r' \
        --user team --password-file STACK/kafka/users/team.password --ca-file STACK/kafka/tls/ca.pem

Prints the request_id; results arrive on <prefix>results with that key.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import ssl
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer


def build_request(command: str, targets: list[str], timeout_s: float) -> dict[str, object]:
    """A fleetrun.request/1 document: required fields plus a timeout and a label."""
    return {
        "schema": "fleetrun.request/1",
        "request_id": str(uuid.uuid4()),  # lowercase UUID, also the Kafka key
        "submitted_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "principal": f"{getpass.getuser()}@example-team",
        "command": command,
        "targets": targets,
        "timeout_s": timeout_s,
        "labels": {"team": "example"},
    }


async def produce(
    bootstrap: str, topic: str, request: dict[str, object], secured: dict[str, Any]
) -> None:
    """Send with acks=all and idempotence: once this returns, the request is durable."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, **secured
    )
    await producer.start()
    try:
        key = str(request["request_id"]).encode()
        await asyncio.wait_for(
            producer.send_and_wait(topic, orjson.dumps(request), key=key), timeout=30
        )
    finally:
        await producer.stop()


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
    """Parse arguments, produce one request, print its id."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command")
    parser.add_argument("-t", "--target", action="append", required=True)
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    parser.add_argument("--topic-prefix", default="fleetrun.")
    parser.add_argument("--timeout-s", type=float, default=60.0)
    add_security_options(parser)
    args = parser.parse_args()
    request = build_request(args.command, args.target, args.timeout_s)
    asyncio.run(produce(args.bootstrap, args.topic_prefix + "requests", request, security(args)))
    print(request["request_id"])


if __name__ == "__main__":
    main()
