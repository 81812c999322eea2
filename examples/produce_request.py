"""Another team's producer: submit a fleetrun command request with plain aiokafka + orjson.

It deliberately imports nothing from fleetrun: the contract (schemas/request.schema.json) is all
a producer needs. Usage:

    python examples/produce_request.py --bootstrap 127.0.0.1:19092 -t @demo 'uname -r'

Prints the request_id; results arrive on <prefix>results with that key.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import uuid
from datetime import UTC, datetime

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


async def produce(bootstrap: str, topic: str, request: dict[str, object]) -> None:
    """Send with acks=all and idempotence: once this returns, the request is durable."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        key = str(request["request_id"]).encode()
        await asyncio.wait_for(
            producer.send_and_wait(topic, orjson.dumps(request), key=key), timeout=30
        )
    finally:
        await producer.stop()


def main() -> None:
    """Parse arguments, produce one request, print its id."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command")
    parser.add_argument("-t", "--target", action="append", required=True)
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    parser.add_argument("--topic-prefix", default="fleetrun.")
    parser.add_argument("--timeout-s", type=float, default=60.0)
    args = parser.parse_args()
    request = build_request(args.command, args.target, args.timeout_s)
    asyncio.run(produce(args.bootstrap, args.topic_prefix + "requests", request))
    print(request["request_id"])


if __name__ == "__main__":
    main()
