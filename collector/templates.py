"""Command templates with typed parameters, rendered with shell quoting, never spliced.

A template is a command line with `{name}` placeholders, each a declared parameter of one type:
- `one_of = ["nginx", "haproxy"]`: exactly one of these strings;
- `int = [1, 1000]`: decimal digits only, within the range (written back as the number);
- `glob = "/var/log/*.log"`: a path matching the pattern, where `*` and `?` stay within one
  path segment (`/var/log/../../etc/shadow.log` does not match) and no segment is `..`;
- `pattern = "^[a-z0-9-]+$"`: the whole value matches the regular expression.
Every value is then passed through `shlex.quote`, so even a value a type lets through is one
word for the shell: `nginx; touch /tmp/x` can never become two commands.
"""

from __future__ import annotations

import re
import shlex
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

_NAME: Final = re.compile(r"[a-z][a-z0-9_]*\Z")


class TemplateError(ValueError):
    """A parameter value the template refuses, or a template the policy file gets wrong."""


@dataclass(frozen=True, slots=True)
class Param:
    """One typed parameter."""

    name: str
    kind: str  # one_of | int | glob | pattern
    choices: tuple[str, ...] = ()
    low: int = 0
    high: int = 0
    regex: re.Pattern[str] | None = None

    def check(self, value: str) -> str:
        """The value as it goes into the command (before quoting); TemplateError if refused."""
        if self.kind == "one_of":
            if value not in self.choices:
                raise TemplateError(
                    f"parameter {self.name}: {value!r} is not one of {'|'.join(self.choices)}"
                )
            return value
        if self.kind == "int":
            if not (value.isascii() and value.isdigit()) or not self.low <= int(value) <= self.high:
                raise TemplateError(
                    f"parameter {self.name}: {value!r} is not an integer in {self.low}..{self.high}"
                )
            return str(int(value))
        assert self.regex is not None
        if self.kind == "glob" and ".." in value.split("/"):
            raise TemplateError(f"parameter {self.name}: {value!r} has a '..' segment")
        if self.regex.fullmatch(value) is None:
            raise TemplateError(
                f"parameter {self.name}: {value!r} does not match {self.describe()}"
            )
        return value

    def describe(self) -> str:
        if self.kind == "one_of":
            return "one of " + "|".join(self.choices)
        if self.kind == "int":
            return f"int {self.low}..{self.high}"
        assert self.regex is not None
        return f"{self.kind} {self.regex.pattern if self.kind == 'pattern' else self.choices[0]}"


@dataclass(frozen=True, slots=True)
class Template:
    """A named command template."""

    name: str
    command: str
    params: Mapping[str, Param]

    def render(self, values: Mapping[str, str]) -> str:
        """The command line with every parameter checked and shell-quoted."""
        unknown = sorted(set(values) - set(self.params))
        if unknown:
            raise TemplateError(
                f"template {self.name} has no parameter {', '.join(unknown)} "
                f"(it takes {', '.join(self.params) or 'none'})"
            )
        missing = [name for name in self.params if name not in values]
        if missing:
            raise TemplateError(f"template {self.name}: parameter {', '.join(missing)} is missing")
        quoted = {name: shlex.quote(p.check(values[name])) for name, p in self.params.items()}
        return self.command.format_map(quoted)


def load_template(name: str, table: Any, where: str) -> Template:
    """A template from its policy-file table: `command` and `params.<name> = {type = …}`."""
    if not _NAME.match(name):
        raise TemplateError(f"{where}: template name {name!r} must match [a-z][a-z0-9_]*")
    if not isinstance(table, dict) or not isinstance(table.get("command"), str):
        raise TemplateError(f'{where}: a template needs command = "… {{param}} …"')
    command: str = table["command"]
    raw_params = table.get("params", {})
    if not isinstance(raw_params, dict):
        raise TemplateError(f"{where}.params: expected a table of parameters")
    params = {p: _param(p, spec, f"{where}.params.{p}") for p, spec in raw_params.items()}
    try:
        fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(command) if f]
    except ValueError as exc:
        raise TemplateError(f"{where}.command: {exc}") from None
    if any(spec or conv for _, spec, conv in fields):
        raise TemplateError(f"{where}.command: placeholders are plain {{name}}, no ! or :")
    used = {f for f, _, _ in fields}
    if used != set(params):
        raise TemplateError(
            f"{where}: placeholders {sorted(used)} and declared params {sorted(params)} differ"
        )
    return Template(name, command, params)


def _param(name: str, spec: Any, where: str) -> Param:
    if not _NAME.match(name):
        raise TemplateError(f"{where}: parameter name must match [a-z][a-z0-9_]*")
    if not isinstance(spec, dict) or len(spec) != 1:
        raise TemplateError(f"{where}: give exactly one type: one_of, int, glob or pattern")
    kind, arg = next(iter(spec.items()))
    if kind == "one_of" and isinstance(arg, list) and arg and all(isinstance(a, str) for a in arg):
        return Param(name, kind, choices=tuple(arg))
    if (
        kind == "int"
        and isinstance(arg, list)
        and len(arg) == 2
        and all(type(a) is int for a in arg)
    ):
        return Param(name, kind, low=arg[0], high=arg[1])
    if kind == "glob" and isinstance(arg, str) and arg:
        return Param(name, kind, choices=(arg,), regex=re.compile(_glob_regex(arg)))
    if kind == "pattern" and isinstance(arg, str):
        try:
            return Param(name, kind, regex=re.compile(arg))
        except re.error as exc:
            raise TemplateError(f"{where}: pattern: {exc}") from None
    raise TemplateError(
        f"{where}: {kind} = {arg!r} is not one_of = [strings], int = [low, high], "
        'glob = "pattern" or pattern = "regex"'
    )


def _glob_regex(glob: str) -> str:
    """A glob as a regex in which `*` and `?` never cross a `/`."""
    out = []
    for char in glob:
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        else:
            out.append(re.escape(char))
    return "".join(out)
