#!/usr/bin/env python3
"""Generate a self-signed ECDSA P-256 certificate usable with Chromium's serverCertificateHashes.

Validity is 10 days (browsers require < 14 days), SAN = localhost, 127.0.0.1, ::1.
Writes CERT and KEY as PEM and prints the SHA-256 of the DER certificate as lowercase hex.
Needs the `cryptography` package (installed in the py311 venv by setup.sh).
"""
import argparse
import datetime
import hashlib
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cert", required=True, help="output certificate (PEM)")
    ap.add_argument("--key", required=True, help="output private key (PEM, PKCS#8)")
    ap.add_argument("--days", type=int, default=10, help="validity in days (default 10, must be < 14 for Chromium)")
    args = ap.parse_args()

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=args.days))
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
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    with open(args.cert, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(args.key, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    print(hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest())


if __name__ == "__main__":
    main()
