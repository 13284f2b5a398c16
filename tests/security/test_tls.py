"""TLS minimum version, outbound (the call layer) and inbound (the receiver serving HTTPS).

Real handshakes on loopback: a certificate authority and a server certificate made at test
time with `cryptography`, a TLS 1.2-only HTTPS stand-in, and the receiver under uvicorn
with the settings `nura webhooks serve` uses.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from nura.core.errors import TlsRefused
from nura.core.http import close_shared_client


@dataclass(frozen=True)
class Certs:
    ca: Path
    cert: Path
    key: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_certs(directory: Path) -> Certs:
    """A CA and a certificate for localhost / 127.0.0.1 signed by it (PEM files)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("nura test CA"))
        .issuer_name(_name("nura test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    certs = Certs(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    certs.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    certs.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    certs.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certs


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        self.server.served += 1  # type: ignore[attr-defined]
        body = json.dumps({"tls": self.connection.version()}).encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


class HttpsServer(ThreadingHTTPServer):
    """An HTTPS stand-in speaking at most `maximum` (a server that stopped at TLS 1.2)."""

    daemon_threads = True

    def __init__(self, certs: Certs, maximum: ssl.TLSVersion) -> None:
        super().__init__(("127.0.0.1", 0), _Ok)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.maximum_version = maximum
        ctx.load_cert_chain(certs.cert, certs.key)
        self.socket = ctx.wrap_socket(self.socket, server_side=True)
        self.served = 0
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"https://localhost:{self.server_address[1]}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a refused handshake is the point of some tests

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def certs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Certs]:
    """Test certificates, trusted by the process's default verify paths (SSL_CERT_FILE)."""
    made = make_certs(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(made.ca))
    close_shared_client()  # a client built earlier would not trust the test CA
    yield made
    close_shared_client()


@pytest.fixture
def tls12_server(certs: Certs) -> Iterator[HttpsServer]:
    server = HttpsServer(certs, ssl.TLSVersion.TLSv1_2)
    yield server
    server.stop()


def _call(nura_config: Any, url: str, minimum: str) -> httpx.Response:
    """One call through a call layer on the process's shared client (the configured TLS
    minimum); the rate limiter is not what this test is about, hence `NoLimiter`."""
    from nura.core.breaker import CircuitBreakers
    from nura.core.layer import CallLayer
    from nura.core.ratelimit import NoLimiter
    from nura.core.runtime import get_config, store_url
    from nura.core.stores.db import get_engine

    nura_config(
        {
            "platform": {"tls_min_version": minimum},
            "external_services": {"partners": {"partner": {"base_url": url}}},
        }
    )
    cfg = get_config()  # as every process loads it: the TLS minimum applies from here
    breakers = CircuitBreakers(get_engine(store_url(cfg)))
    layer = CallLayer(cfg.policies(), breakers=breakers, limiter=NoLimiter())
    return layer.request("partner", "GET", "/hello").value


def test_minimum_12_reaches_a_tls12_only_server(nura_config, tls12_server) -> None:
    response = _call(nura_config, tls12_server.url, "1.2")
    assert response.status_code == 200
    assert response.json() == {"tls": "TLSv1.2"}


def test_minimum_13_refuses_a_tls12_only_server(nura_config, tls12_server) -> None:
    with pytest.raises(TlsRefused) as refused:
        _call(nura_config, tls12_server.url, "1.3")
    err = refused.value
    assert err.attempts == 1 and not err.retryable  # the same server answers the same way
    assert err.status is None and err.service == "partner"
    assert "PROTOCOL_VERSION" in str(err) or "UNSUPPORTED_PROTOCOL" in str(err), str(err)
    assert tls12_server.served == 0


def test_minimum_13_reaches_a_tls13_server(nura_config, certs) -> None:
    server = HttpsServer(certs, ssl.TLSVersion.MAXIMUM_SUPPORTED)
    try:
        assert _call(nura_config, server.url, "1.3").json() == {"tls": "TLSv1.3"}
    finally:
        server.stop()


def test_an_untrusted_certificate_is_refused_too(nura_config, tls12_server, monkeypatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE")
    close_shared_client()
    with pytest.raises(TlsRefused, match="CERTIFICATE_VERIFY_FAILED"):
        _call(nura_config, tls12_server.url, "1.2")


def test_yaml_number_and_receiver_pair_are_validated(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from nura.config import ConfigError, parse_config
    from nura.config.sections.webhooks import ReceiverSettings

    assert parse_config({"platform": {"tls_min_version": 1.3}}).platform.tls_min_version == "1.3"
    with pytest.raises(ConfigError, match="tls_min_version: input should be '1.2' or '1.3'"):
        parse_config({"platform": {"tls_min_version": "1.1"}})
    with pytest.raises(ValidationError, match="set together"):
        ReceiverSettings(tls_certfile=str(tmp_path / "cert.pem"))


def _client(certs: Certs, maximum: ssl.TLSVersion) -> httpx.Client:
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    ctx.maximum_version = maximum
    return httpx.Client(verify=ctx, timeout=10)


def test_receiver_serves_tls_with_the_same_minimum(certs, tmp_path: Path) -> None:
    from nura.config import parse_config
    from nura.core.stores.db import get_engine
    from nura.platform.receiver_app import create_app
    from tests.webhooks.conftest import ReceiverThread

    cfg = parse_config(
        {
            "platform": {"tls_min_version": "1.3"},
            "webhooks": {
                "receiver": {"tls_certfile": str(certs.cert), "tls_keyfile": str(certs.key)}
            },
        }
    )
    engine = get_engine(f"sqlite:///{tmp_path / 'nura.db'}")
    app = create_app(cfg, engine=engine, run_dispatcher=False)
    receiver = ReceiverThread(app, served=True).start()
    url = f"https://localhost:{receiver.port}/healthz"
    try:
        with _client(certs, ssl.TLSVersion.MAXIMUM_SUPPORTED) as modern:
            response = modern.get(url)
            assert response.status_code == 200
            assert response.extensions["network_stream"] is not None
        with _client(certs, ssl.TLSVersion.TLSv1_2) as old, pytest.raises(httpx.ConnectError):
            old.get(url)
        with pytest.raises(httpx.RemoteProtocolError):  # no plain HTTP on the TLS port
            httpx.get(f"http://localhost:{receiver.port}/healthz", timeout=10)
    finally:
        receiver.stop()
