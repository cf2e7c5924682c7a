"""The cluster CA and the certificates it issues (the `cryptography` library). Pure: PEM in, PEM
out; where they are kept is `security.material`'s business.

Keys are EC P-256 (fast handshakes; Java 17 and Kafka's PEM loader read them), private keys
unencrypted PKCS#8: Kafka reads them inline from its 0600 properties file (`ssl.keystore.key`),
which needs no key password. Node certificates are for servers and clients both (brokers talk to
each other), with every name the host is reached by in the SAN, so clients that verify host names
(`ssl.endpoint.identification.algorithm=https`, Kafka's default) connect.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
_BACKDATE = dt.timedelta(minutes=5)  # hosts' clocks may trail the control machine's a little


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def new_ca(cluster: str, days: int = CA_DAYS, now: dt.datetime | None = None) -> tuple[str, str]:
    """A self-signed CA for one cluster: (certificate PEM, private key PEM)."""
    now = now or _now()
    key = ec.generate_private_key(ec.SECP256R1())
    # A name of its own per CA (a rotation trusts two CAs of one cluster at once; distinct subjects
    # keep every TLS stack's chain building unambiguous)
    cn = f"kafkaform CA {now:%Y%m%d-%H%M%S}-{os.urandom(3).hex()}"
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, cluster),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return _cert_pem(cert), _key_pem(key)


def issue(ca_cert_pem: str, ca_key_pem: str, common_name: str, sans: list[str], days: int,
          organization: str | None = None, now: dt.datetime | None = None) -> tuple[str, str]:
    """A certificate for a node (sans: its addresses and names) or a client (no sans), signed by
    the CA: (certificate PEM, private key PEM)."""
    now = now or _now()
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem.encode())
    ca_key = serialization.load_pem_private_key(ca_key_pem.encode(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    # ASN.1 order O, CN: Java (and RFC 4514) print it "CN=<name>,O=<cluster>", the form the
    # principal mapping rule reads the CN from.
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    not_after = min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc)
    b = (x509.CertificateBuilder().subject_name(x509.Name(attrs)).issuer_name(ca_cert.subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - _BACKDATE).not_valid_after(not_after)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                        critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
                        critical=False))
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName([_general_name(s) for s in sans]), critical=False)
    cert = b.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    return _cert_pem(cert), _key_pem(key)


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


@dataclass(frozen=True)
class CertInfo:
    subject_cn: str
    issuer: str  # the issuer's RFC 4514 name
    not_after: dt.datetime
    sans: tuple[str, ...]
    is_ca: bool
    serial: int
    fingerprint: str  # sha256 of the DER, hex

    def days_left(self, now: dt.datetime | None = None) -> float:
        return (self.not_after - (now or _now())).total_seconds() / 86400


def inspect(cert_pem: str) -> CertInfo:
    """What a PEM certificate says (its first certificate). Raises ValueError when it is none."""
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans = tuple([str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
                     + list(san.get_values_for_type(x509.DNSName)))
    except x509.ExtensionNotFound:
        sans = ()
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    return CertInfo(subject_cn=str(cns[0].value) if cns else "", issuer=cert.issuer.rfc4514_string(),
                    not_after=cert.not_valid_after_utc, sans=sans, is_ca=is_ca, serial=cert.serial_number,
                    fingerprint=cert.fingerprint(hashes.SHA256()).hex())


def signed_by(cert_pem: str, ca_cert_pem: str) -> bool:
    """Whether `ca_cert_pem`'s key signed `cert_pem`."""
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    ca = x509.load_pem_x509_certificate(ca_cert_pem.encode())
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, Exception):  # noqa: BLE001 - InvalidSignature and friends: not signed by it
        return False
    return True


def ca_problems(cert_pem: str, key_pem: str, now: dt.datetime | None = None) -> list[str]:
    """Why a provided CA (certificate + key) cannot issue the cluster's certificates; [] if it can."""
    try:
        info = inspect(cert_pem)
    except ValueError as e:
        return [f"the CA certificate is not a PEM certificate ({e})"]
    problems = []
    if info.days_left(now) <= 0:
        problems.append(f"the CA certificate expired on {info.not_after:%Y-%m-%d}")
    if not info.is_ca:
        problems.append("the certificate is not a CA (basicConstraints CA:TRUE is missing)")
    try:
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except (ValueError, TypeError) as e:
        problems.append(f"the CA key is not an unencrypted PEM private key ({str(e).splitlines()[0][:100]})")
        return problems
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    der, spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(der, spki) != cert.public_key().public_bytes(der, spki):
        problems.append("the CA key does not belong to the CA certificate")
    return problems
