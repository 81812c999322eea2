"""The local Kafka's secrets: its own CA and broker certificate, and one password per principal.

Made once under <state>/kafka/ (files 0600, the private keys and passwords only for their
owner), kept across restarts; `stack reset` deletes them with the rest. The broker listens with
SASL_SSL (SCRAM-SHA-512) for clients and between brokers; the controller listener takes PLAIN
from the `admin` super user only. Each fleetrun service gets its own principal (stack/acls.py
says what each may do) and the stack's env file points each at its own password file.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# The super user (inter-broker, controller, topic and ACL administration: the stack, tests and
# benchmarks), then one principal per service, and `team`: whoever submits requests.
ADMIN = "admin"
PRINCIPALS = (ADMIN, "collector", "sink", "web", "team")
# The env file's service prefix -> the principal that service connects as.
SERVICE_PRINCIPALS = {"COLLECTOR": "collector", "SINK": "sink", "WEB": "web", "CLI": "team"}
MECHANISM = "SCRAM-SHA-512"
SECURITY_PROTOCOL = "SASL_SSL"
_VALID_DAYS = 3650


def _write_private(path: Path, data: bytes) -> None:
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_bytes(data)


class KafkaSecrets:
    """Paths of the CA, the broker's key and certificate, and the principals' passwords."""

    def __init__(self, home: Path) -> None:
        self.tls = home / "tls"
        self.users = home / "users"
        self.ca_cert = self.tls / "ca.pem"
        self.ca_key = self.tls / "ca.key"
        # Key and certificate in one PEM file: Kafka's `ssl.keystore.type=PEM` reads it so.
        self.broker_pem = self.tls / "broker.pem"

    def password_file(self, principal: str) -> Path:
        return self.users / f"{principal}.password"

    def password(self, principal: str) -> str:
        return self.password_file(principal).read_text().strip()

    def ensure(self) -> None:
        """Make what is missing: the CA and the broker's certificate, then the passwords."""
        # tls/ holds the public CA certificate too (its private keys are 0600); users/ holds
        # only passwords.
        for d, mode in ((self.tls, 0o755), (self.users, 0o700)):
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(mode)
        if not (self.ca_cert.exists() and self.ca_key.exists() and self.broker_pem.exists()):
            self._make_tls()
        for principal in PRINCIPALS:
            path = self.password_file(principal)
            if not path.exists():
                # URL-safe: no quote or backslash to escape in the broker's JAAS line.
                _write_private(path, (secrets.token_urlsafe(24) + "\n").encode())

    def _make_tls(self) -> None:
        now = dt.datetime.now(dt.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fleetrun local stack CA")])
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=_VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=_VALID_DAYS))
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                        x509.IPAddress(ipaddress.ip_address("::1")),
                    ]
                ),
                critical=False,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        pkcs8 = serialization.PrivateFormat.PKCS8  # the only private key form Kafka's PEM reads
        none = serialization.NoEncryption()
        pem = serialization.Encoding.PEM
        _write_private(self.ca_key, ca_key.private_bytes(pem, pkcs8, none))
        _write_private(
            self.broker_pem, key.private_bytes(pem, pkcs8, none) + cert.public_bytes(pem)
        )
        # The CA certificate is public: every client reads it to check the broker.
        self.ca_cert.write_bytes(ca.public_bytes(pem))
        self.ca_cert.chmod(0o644)

    def client_settings(self, principal: str) -> dict[str, Any]:
        """The KafkaClientSettings fields (fleetrun/runtime/kafkaauth.py) of `principal`."""
        return {
            "kafka_security_protocol": SECURITY_PROTOCOL,
            "kafka_sasl_mechanism": MECHANISM,
            "kafka_sasl_username": principal,
            "kafka_sasl_password_file": str(self.password_file(principal)),
            "kafka_ssl_ca_file": str(self.ca_cert),
        }

    def env_lines(self) -> dict[str, str]:
        """The env file's Kafka security: shared protocol and CA, each service's own user."""
        values = {
            "FLEETRUN_KAFKA_SECURITY_PROTOCOL": SECURITY_PROTOCOL,
            "FLEETRUN_KAFKA_SASL_MECHANISM": MECHANISM,
            "FLEETRUN_KAFKA_SSL_CA_FILE": str(self.ca_cert),
        }
        for service, principal in SERVICE_PRINCIPALS.items():
            values[f"FLEETRUN_{service}_KAFKA_SASL_USERNAME"] = principal
            values[f"FLEETRUN_{service}_KAFKA_SASL_PASSWORD_FILE"] = str(
                self.password_file(principal)
            )
        # Not a service's: the stack's own tools, tests and benchmarks administer as the super
        # user (they create topics and ACLs under prefixes of their own).
        values["FLEETRUN_STACK_KAFKA_ADMIN_USERNAME"] = ADMIN
        values["FLEETRUN_STACK_KAFKA_ADMIN_PASSWORD_FILE"] = str(self.password_file(ADMIN))
        return values
