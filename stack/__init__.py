"""The local real stack: Apache Kafka (KRaft), PostgreSQL and OpenSSH test hosts, no Docker.

`python -m stack up|down|status|env|reset` (or `make stack-up` ...). See stack/README.md.
"""

from stack.config import StackConfig
from stack.proc import StackError
from stack.services import Stack

__all__ = ["Stack", "StackConfig", "StackError"]
