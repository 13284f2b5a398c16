"""SSRF guard: every blocked range is refused unless allow-listed; DNS answers are checked."""

from __future__ import annotations

import pytest

from nura.webhooks.ssrf import SSRFGuard, SSRFRefused


def resolver(table: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError("Name or service not known")
        return table[host]

    return resolve


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://127.5.6.7:8080/hook",
        "http://10.1.2.3/hook",
        "http://172.16.0.1/hook",
        "http://172.31.255.255/hook",
        "http://192.168.1.10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://[fc00::1]/hook",
        "http://[fd12:3456::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
    ],
)
def test_blocked_literals_are_refused(url: str) -> None:
    with pytest.raises(SSRFRefused):
        SSRFGuard().check(url)


def test_public_addresses_pass_and_neighbours_of_blocked_ranges_too() -> None:
    guard = SSRFGuard(resolver=resolver({"hooks.partner.example": ["93.184.215.14"]}))
    assert guard.check("https://hooks.partner.example/x") == ["93.184.215.14"]
    for url in ("http://172.32.0.1/", "http://172.15.255.255/", "http://11.0.0.1/"):
        guard.check(url)


def test_names_resolving_to_private_addresses_are_refused() -> None:
    guard = SSRFGuard(
        resolver=resolver(
            {
                "metadata.google.internal": ["169.254.169.254"],
                # one public and one private answer: any private answer refuses
                "mixed.example": ["93.184.215.14", "10.0.0.5"],
            }
        )
    )
    with pytest.raises(SSRFRefused, match="169.254.169.254"):
        guard.check("http://metadata.google.internal/computeMetadata/v1/")
    with pytest.raises(SSRFRefused, match="10.0.0.5"):
        guard.check("https://mixed.example/hook")
    with pytest.raises(SSRFRefused, match="cannot resolve"):
        guard.check("https://nowhere.invalid/hook")


def test_allow_list_by_ip_cidr_and_host() -> None:
    table = {"sink.internal": ["10.9.8.7"], "localhost": ["127.0.0.1", "::1"]}
    guard = SSRFGuard(["127.0.0.1", "10.9.0.0/16", "build-box"], resolver=resolver(table))
    guard.check("http://127.0.0.1:8790/hooks/sandbox")
    guard.check("http://sink.internal/hook")
    guard.check("http://build-box:9000/hook")  # allow-listed by name: not even resolved
    with pytest.raises(SSRFRefused, match="::1"):
        guard.check("http://localhost/hook")  # ::1 is not allow-listed
    with pytest.raises(SSRFRefused):
        guard.check("http://127.0.0.2/hook")


@pytest.mark.parametrize(
    "url", ["ftp://93.184.215.14/x", "file:///etc/passwd", "http:///nohost", "http://u:p@1.1.1.1/"]
)
def test_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(SSRFRefused):
        SSRFGuard().check(url)


def test_refusal_message_does_not_leak_the_path() -> None:
    with pytest.raises(SSRFRefused) as info:
        SSRFGuard().check("http://10.0.0.1/hooks/secret-token-123")
    assert "secret-token-123" not in str(info.value)
