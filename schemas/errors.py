"""The one error the wire contract raises: what is wrong, and where."""

from __future__ import annotations

from typing import ClassVar


class SchemaError(ValueError):
    """A message does not follow the contract; `path` says where, `problem` says what."""

    retriable: ClassVar[bool] = False  # the same bytes fail the same way every time

    def __init__(self, path: str, problem: str, rule: str) -> None:
        self.path = path
        self.problem = problem
        self.rule = rule  # the JSON Schema keyword or codec rule that failed, for tests and metrics
        super().__init__(f"{path}: {problem}" if path else problem)

    def __reduce__(self) -> tuple[type[SchemaError], tuple[str, str, str]]:
        return (type(self), (self.path, self.problem, self.rule))
