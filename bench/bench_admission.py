"""Admission benchmark: what signature verification and the command policy cost per request.

Measured on one core, in this process, side by side:
- verify: Admission.verify of a signed request (parse the record, RFC 8785 canonical bytes,
  SSHSIG check, decode again from the canonical bytes) for ed25519, ecdsa-p256 and rsa-3072
  keys; and its parts (canonical bytes alone, the signature check alone);
- policy: Admission.authorize on a 3-host and a 500-host request (rule targets expanded once
  per inventory, then a set lookup per host), and a template request (render + shell quoting);
- both: verify + authorize of a 3-host ed25519 request, the per-request admission cost.
Keys and signatures are made by `ssh-keygen` (in a temporary directory), as operators make them.

Run: .venv/bin/python -m bench.bench_admission (about 30 s). Writes
bench/results/<date>-admission.json and .md. Target: verify + policy ≤ 0.5 ms per request,
judged on the best of the timed runs (as timeit advises: other processes only ever add time;
the load average is recorded beside). "ed25519 primitive" is OpenSSL's verification alone, so
what fleetrun adds around it shows.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
import timeit
import tomllib
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any, Final

import cryptography
import msgspec
from cryptography.hazmat.primitives.asymmetric import ed25519

import schemas
from bench.measure import write_results
from collector.admission import Admission
from collector.fanout import plan_request
from collector.inventory import Inventory
from collector.policy import Policy
from collector.settings import CollectorSettings
from collector.sshsig import AllowedSigners
from schemas import Request

REPEATS: Final = 5
RUN_SECONDS: Final = 0.5
TARGET_US: Final = 500.0
KEYS: Final = {"ed25519": ["-t", "ed25519"], "ecdsa-p256": ["-t", "ecdsa", "-b", "256"],
               "rsa-3072": ["-t", "rsa", "-b", "3072"]}  # fmt: skip
POLICY: Final = """
[principals]
ops = ["alice", "bob"]

[templates.tail_log]
command = "tail -n {lines} {path}"
params.path = { glob = "/var/log/*.log" }
params.lines = { int = [1, 1000] }

[[rules]]
name = "interns-never-db"
effect = "deny"
principals = ["intern-*"]
targets = ["@db"]

[[rules]]
name = "ops-web"
principals = ["@ops"]
targets = ["@web"]
commands = ["uptime", "uname -r"]
templates = ["tail_log"]
max_hosts = 1000
env = ["LANG"]
"""


INVENTORY: Final = """
[defaults]
user = "deploy"

[groups]
web = ["web[001-500]"]
db = ["db[1-9]"]
"""


def _per_call(fn: Callable[[], object]) -> dict[str, float]:
    """Microseconds per call: median and best of REPEATS timed runs."""
    number = max(1, int(RUN_SECONDS / max(timeit.timeit(fn, number=20) / 20, 1e-9)))
    runs = sorted(t / number * 1e6 for t in timeit.repeat(fn, number=number, repeat=REPEATS))
    return {"us_each": round(runs[len(runs) // 2], 1), "best_us": round(runs[0], 1)}


def _sign(key: Path, request: Request) -> Request:
    message = schemas.canonical_bytes(schemas.as_document(request))
    done = subprocess.run(
        ["ssh-keygen", "-q", "-Y", "sign", "-n", "fleetrun", "-f", str(key)],
        input=message,
        capture_output=True,
        check=True,
        timeout=60,
    )
    return msgspec.structs.replace(request, signature=done.stdout.decode())


def _verifier(admission: Admission, signed: Request) -> Callable[[], object]:
    raw = schemas.encode(signed)
    admission.verify(raw, signed)  # warm, and proves it verifies
    return lambda: admission.verify(raw, signed)


def measure(work: Path) -> dict[str, Any]:
    lines = []
    keys = {}
    for name, args in KEYS.items():
        keys[name] = work / name
        subprocess.run(
            ["ssh-keygen", "-q", *args, "-N", "", "-f", str(keys[name])], check=True, timeout=120
        )
        pub = (work / f"{name}.pub").read_text().split()
        lines.append(f'alice namespaces="fleetrun" {pub[0]} {pub[1]}')
    (work / "allowed_signers").write_text("\n".join(lines) + "\n")
    signers = AllowedSigners.load(work / "allowed_signers")
    policy = Policy.parse(tomllib.loads(POLICY))
    (work / "inventory.toml").write_text(INVENTORY)
    inventory = Inventory.load(work / "inventory.toml", CollectorSettings())
    policy.check_groups(inventory.groups)
    admission = Admission(signers=signers, policy=policy)
    figures: dict[str, dict[str, float]] = {}

    small = Request.new(principal="alice", command="uptime", targets=["web[001-003]"])
    for name, key in keys.items():
        figures[f"verify {name}"] = _per_call(_verifier(admission, _sign(key, small)))
    signed = _sign(keys["ed25519"], small)
    raw = schemas.encode(signed)
    document = schemas.as_document(signed)
    message = schemas.canonical_bytes(document)
    assert isinstance(signed.signature, str)
    signature = signed.signature
    figures["canonical bytes only"] = _per_call(lambda: schemas.canonical_bytes(document))
    primitive = ed25519.Ed25519PrivateKey.generate()
    payload, public = b"x" * 200, primitive.public_key()
    primitive_sig = primitive.sign(payload)
    figures["ed25519 primitive (OpenSSL)"] = _per_call(
        lambda: public.verify(primitive_sig, payload)
    )
    figures["ed25519 SSHSIG check only"] = _per_call(
        lambda: signers.verify(signature, message, "alice", "fleetrun")
    )
    audit = admission.verify(raw, signed)
    plan3 = plan_request(signed, inventory)
    figures["policy 3 hosts"] = _per_call(lambda: admission.authorize(plan3, audit, inventory))
    big = Request.new(principal="alice", command="uptime", targets=["@web"])
    plan500 = plan_request(big, inventory)
    figures["policy 500 hosts"] = _per_call(lambda: admission.authorize(plan500, audit, inventory))
    template = Request.new(
        principal="alice",
        template="tail_log",
        params={"path": "/var/log/syslog.log", "lines": "100"},
        targets=["web[001-003]"],
    )
    plan_t = plan_request(template, inventory)
    figures["policy 3 hosts, template"] = _per_call(
        lambda: admission.authorize(plan_t, audit, inventory)
    )

    def both() -> None:
        admission.authorize(plan3, admission.verify(raw, signed), inventory)

    figures["verify ed25519 + policy 3 hosts"] = _per_call(both)
    got = figures["verify ed25519 + policy 3 hosts"]["best_us"]
    return {
        "benchmark": "admission",
        "date": date.today().isoformat(),
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cryptography": cryptography.__version__,
        "repeats": REPEATS,
        "targets": {"verify_plus_policy_us": {"wanted": TARGET_US, "got": got}},
        "meets_target": got <= TARGET_US,
        "figures": figures,
    }


def markdown(report: dict[str, Any]) -> str:
    rows = "\n".join(
        f"| {name} | {f['us_each']} | {f['best_us']} |" for name, f in report["figures"].items()
    )
    target = report["targets"]["verify_plus_policy_us"]
    return (
        f"# Admission cost per request ({report['date']}, {report['cpus']} CPUs, one core used, "
        f"load average {report['load_average_1m']})\n\n"
        "| what | µs per request (median) | best |\n|---|---|---|\n"
        f"{rows}\n\n"
        f"Target: verify + policy ≤ {target['wanted']:g} µs; got {target['got']:g} µs (best) "
        f"({'met' if report['meets_target'] else 'NOT met'}).\n"
    )


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="fleetrun-bench-admission-") as tmp:
        report = measure(Path(tmp))
    stem = write_results("admission", report["date"], report, markdown(report))
    print(markdown(report))
    print(f"wrote {stem}.json and .md")
    return 0 if report["meets_target"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
