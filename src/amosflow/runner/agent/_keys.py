"""The runner's own key and certificate signing request: the key never leaves the runner.

A fresh ECDSA P-256 key is made at enrollment; only a CSR signed with it (proof of
possession) goes to the control plane, whose CA answers with the runner's certificate.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

RunnerKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def key_pem(key: RunnerKey) -> bytes:
    """A private key as unencrypted PKCS#8 PEM, for a 0600 file."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def generate_runner_key() -> ec.EllipticCurvePrivateKey:
    """A fresh P-256 key for a runner; it never leaves the runner, only its CSR does."""
    return ec.generate_private_key(ec.SECP256R1())


def make_csr(private_key: RunnerKey, name: str) -> bytes:
    """A PEM certificate signing request for ``private_key``, signed by it (proof of possession).

    ``name`` goes in the subject for the operator's eyes; the CA replaces the subject anyway.
    """
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name[:64])]))
        .sign(private_key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)
