"""Environment variable names a request may not set: those that change how programs load or start.

A request's `env` reaches the remote command's environment (SSH env requests, or an env wrapper
the collector chooses), so a name that makes the dynamic loader, a shell or an interpreter load
or run other code turns `env` into a second command line, one that no command policy reads:
`LD_PRELOAD` (a host with `AcceptEnv *` honoured it), `BASH_ENV`, `PATH`. The contract refuses
these names (request.schema.json: `env.propertyNames.not`), so every producer and consumer sees
the same rule; the command itself may still set them, and that is what command policy governs.

Where the list comes from (each a list maintained by people who had to get this right):
- glibc's `UNSECURE_ENVVARS` (elf/dl-support / sysdeps/generic/unsecvars.h), which ld.so strips
  for set-uid programs: LD_* (PRELOAD, LIBRARY_PATH, AUDIT, …), GCONV_PATH, GETCONF_DIR,
  GLIBC_TUNABLES (CVE-2023-4911), HOSTALIASES, LOCALDOMAIN, LOCPATH, MALLOC_*, NIS_PATH, NLSPATH,
  RESOLV_HOST_CONF, RES_OPTIONS. (TMPDIR and TZDIR are on it too; they move data, not code, and
  stay allowed.)
- sudo's `initial_badenv_table` (plugins/sudoers/env.c), what sudo removes even with env_keep:
  IFS, CDPATH, ENV, BASH_ENV, PS4, GLOBIGNORE, BASHOPTS, SHELLOPTS, FPATH, NULLCMD, READNULLCMD,
  ZDOTDIR, TMPPREFIX (shells); _RLD*, LDR_*, LIBPATH, SHLIB_PATH, DYLD_* (other loaders);
  PERLLIB, PERL5LIB, PERL5OPT, PERL5DB, PERLIO_DEBUG, PYTHON*, RUBYLIB, RUBYOPT,
  JAVA_TOOL_OPTIONS (interpreters); KRB5_CONFIG, KRB5_KTNAME; TERMINFO, TERMINFO_DIRS, TERMCAP.
- The interpreters' own documentation, for options that load code at start: NODE_OPTIONS,
  NODE_PATH, _JAVA_OPTIONS, JDK_JAVA_OPTIONS, CLASSPATH, LUA_INIT / LUA_PATH / LUA_CPATH,
  TCLLIBPATH, PHPRC, PHP_INI_SCAN_DIR, DOTNET_STARTUP_HOOKS, CORECLR_* (profilers),
  OPENSSL_CONF / OPENSSL_ENGINES / OPENSSL_MODULES, LESSOPEN / LESSCLOSE (less runs them),
  PROMPT_COMMAND, and git's program-running variables (GIT_CONFIG*, GIT_SSH, GIT_SSH_COMMAND,
  GIT_EXEC_PATH, GIT_ASKPASS, GIT_EDITOR, GIT_PAGER, GIT_EXTERNAL_DIFF, GIT_PROXY_COMMAND,
  GIT_TEMPLATE_DIR).
- OpenSSH and sudo: SSH_* (SSH_AUTH_SOCK, SSH_ASKPASS, SSH_ORIGINAL_COMMAND: which agent, which
  program asks for secrets, what a forced command believes) and SUDO_* (SUDO_ASKPASS runs a
  program).
Names are upper case by the contract's own name pattern, so only upper-case spellings matter.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Final

# Families (a prefix and anything after it) and single names; the schema file holds the same
# pattern (tests/unit/test_schemas_files.py keeps them equal).
DENIED_PREFIXES: Final = (
    "LD_", "DYLD_", "_RLD", "LDR_", "MALLOC_", "PYTHON", "PERL5", "PERLIO", "SSH_", "SUDO_",
    "LUA_", "KRB5_", "OPENSSL_", "CORECLR_", "GIT_CONFIG",
)  # fmt: skip
DENIED_NAMES: Final = (
    "BASH_ENV", "ENV", "PATH", "IFS", "CDPATH", "SHELLOPTS", "BASHOPTS", "GLOBIGNORE", "PS4",
    "PROMPT_COMMAND", "FPATH", "ZDOTDIR", "NULLCMD", "READNULLCMD", "TMPPREFIX",
    "PERLLIB", "RUBYOPT", "RUBYLIB", "NODE_OPTIONS", "NODE_PATH", "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS", "CLASSPATH", "TCLLIBPATH", "PHPRC", "PHP_INI_SCAN_DIR",
    "DOTNET_STARTUP_HOOKS", "LESSOPEN", "LESSCLOSE", "TERMINFO", "TERMINFO_DIRS", "TERMCAP",
    "GCONV_PATH", "GETCONF_DIR", "GLIBC_TUNABLES", "HOSTALIASES", "LOCALDOMAIN", "LOCPATH",
    "NIS_PATH", "NLSPATH", "RESOLV_HOST_CONF", "RES_OPTIONS", "LIBPATH", "SHLIB_PATH",
    "GIT_SSH", "GIT_SSH_COMMAND", "GIT_EXEC_PATH", "GIT_ASKPASS", "GIT_EDITOR", "GIT_PAGER",
    "GIT_EXTERNAL_DIFF", "GIT_PROXY_COMMAND", "GIT_TEMPLATE_DIR",
)  # fmt: skip
# ECMA-262 and Python read it alike (the schema file's `$` becomes `\Z` in schemas.patterns).
DENIED_ENV_PATTERN: Final = (
    "^(?:(?:" + "|".join(DENIED_PREFIXES) + ")[A-Z0-9_]*|" + "|".join(DENIED_NAMES) + ")$"
)
DENIED_ENV_MESSAGE: Final = (
    "changes how programs load or start and is not allowed in a request "
    '(schemas/README.md, "Environment")'
)
_DENIED: Final = re.compile(DENIED_ENV_PATTERN[:-1] + r"\Z")


def env_denied(name: str) -> bool:
    """True for a name the contract refuses (see the module docstring for why each)."""
    return _DENIED.match(name) is not None


def refused_env(env: Mapping[str, str], allowed: Collection[str] | None = None) -> str | None:
    """The first variable of `env` that may not be set, or None.

    Always refused: the contract's deny-list. With `allowed` (a policy's allow-list, for one
    principal or rule), also every name not in it: an allow-list only narrows, it cannot let a
    denied name through, because the contract refuses it before any policy runs.
    """
    for name in env:
        if env_denied(name) or (allowed is not None and name not in allowed):
            return name
    return None


def env_refusal(name: str, allowed: Collection[str] | None = None) -> str:
    """The message for `refused_env`'s answer, as the codec words it for denied names:
    "env.LD_PRELOAD: changes how programs load or start and is not allowed in a request …"."""
    if env_denied(name):
        return f"env.{name}: {DENIED_ENV_MESSAGE}"
    listed = ", ".join(sorted(allowed or ())) or "none"
    return f"env.{name}: is not on this request's allow-list (allowed: {listed})"
