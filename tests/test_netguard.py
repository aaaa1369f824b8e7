"""SSRF guard: address classification, literal forms, every DNS answer checked, allow-list."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

import pytest

from monitor.fetch.netguard import (
    AllowList,
    BlockedError,
    ResolveError,
    blocked_reason,
    check_scheme,
    parse_ip,
    resolve_checked,
    system_resolver,
)

NOBODY = AllowList()


class StubResolver:
    """Answers from a table and records every question (to prove literals are never asked)."""

    def __init__(self, table: dict[str, Sequence[str]]) -> None:
        self.table = table
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.calls.append(host)
        if host not in self.table:
            raise OSError(f"stub: no such host {host}")
        return self.table[host]


stub = StubResolver


async def never_called(host: str, port: int) -> Sequence[str]:
    raise AssertionError(f"a literal address must not be resolved ({host})")


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "RFC 1918"),
        ("172.16.0.1", "RFC 1918"),
        ("172.31.255.254", "RFC 1918"),
        ("192.168.1.1", "RFC 1918"),
        ("169.254.169.254", "metadata"),
        ("fe80::1", "link-local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("100.100.100.200", "carrier-grade NAT"),  # Alibaba's metadata service
        ("0.0.0.0", "this network"),
        ("0.1.2.3", "this network"),
        ("fc00::1", "ULA"),
        ("fd12:3456::1", "ULA"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("::", "unspecified"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped: unmapped first
        ("::ffff:169.254.169.254", "metadata"),
        ("::ffff:10.0.0.1", "RFC 1918"),
        ("64:ff9b::a9fe:a9fe", "metadata"),  # NAT64 of 169.254.169.254
        ("192.0.2.1", "documentation"),
        ("198.18.0.1", "benchmarking"),
    ],
)
def test_blocked_ranges(address: str, reason: str) -> None:
    found = blocked_reason(ipaddress.ip_address(address))
    assert found is not None and reason in found


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8"]
)
def test_public_addresses_pass(address: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ("2130706433", "127.0.0.1"),  # decimal
        ("0x7f000001", "127.0.0.1"),  # hex
        ("0x7f.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),  # octal
        ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"),
        ("[::1]", "::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("example.org", None),
        ("", None),
    ],
)
def test_literal_forms(literal: str, expected: str | None) -> None:
    assert parse_ip(literal) == (ipaddress.ip_address(expected) if expected else None)


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "2130706433", "0x7f.1", "127.1", "[::ffff:127.0.0.1]", "169.254.169.254"]
)
async def test_literal_hosts_are_blocked_without_resolving(host: str) -> None:
    with pytest.raises(BlockedError, match="MONITOR_ALLOW_PRIVATE_HOSTS"):
        await resolve_checked(host, 80, never_called, NOBODY)


@pytest.mark.parametrize(
    ("answers", "shown"),
    [
        (["10.0.0.7"], "10.0.0.7"),
        (["127.0.0.1"], "127.0.0.1"),
        (["::1"], "::1"),
        (["::ffff:192.168.0.1"], "::ffff:192.168.0.1"),
        (["169.254.169.254"], "169.254.169.254"),
        # one bad answer among good ones is enough: the connection could pick it
        (["93.184.216.34", "10.0.0.7"], "10.0.0.7"),
        (["2606:4700::1111", "fd00::1"], "fd00::1"),
    ],
)
async def test_names_resolving_to_private_addresses_are_blocked(
    answers: list[str], shown: str
) -> None:
    resolver = stub({"feeds.example": answers})
    pattern = re.escape(f"feeds.example resolves to {ipaddress.ip_address(shown)}")
    with pytest.raises(BlockedError, match=pattern):
        await resolve_checked("feeds.example", 443, resolver, NOBODY)


async def test_public_answer_is_returned_for_pinning_ipv4_first() -> None:
    resolver = stub({"news.example": ["2606:4700::1111", "93.184.216.34"]})
    ip = await resolve_checked("news.example", 443, resolver, NOBODY)
    assert str(ip) == "93.184.216.34"
    assert resolver.calls == ["news.example"]


async def test_resolver_failures_become_resolve_errors() -> None:
    with pytest.raises(ResolveError, match=r"cannot resolve gone\.example"):
        await resolve_checked("gone.example", 80, stub({}), NOBODY)
    with pytest.raises(ResolveError, match="no addresses"):
        await resolve_checked("empty.example", 80, stub({"empty.example": []}), NOBODY)
    with pytest.raises(ResolveError, match="not an IP address"):
        await resolve_checked("odd.example", 80, stub({"odd.example": ["banana"]}), NOBODY)


def test_allow_list_parsing() -> None:
    allow = AllowList.parse(["Feeds.Internal.", "10.20.0.0/16", "127.0.0.1", " ", "fd00::/8"])
    assert allow.hosts == frozenset({"feeds.internal"})
    assert [str(n) for n in allow.networks] == ["10.20.0.0/16", "127.0.0.1/32", "fd00::/8"]
    assert allow.allows_host("FEEDS.internal")
    assert allow.allows_ip(ipaddress.ip_address("10.20.3.4"))
    assert allow.allows_ip(ipaddress.ip_address("::ffff:127.0.0.1"))  # mapped form of an allowed IP
    assert not allow.allows_ip(ipaddress.ip_address("10.21.0.1"))
    assert not allow.allows_ip(ipaddress.ip_address("127.0.0.2"))


async def test_allow_listed_host_name_passes_with_private_answers() -> None:
    allow = AllowList.parse(["feeds.internal"])
    resolver = stub({"feeds.internal": ["10.0.0.5"], "other.internal": ["10.0.0.5"]})
    assert str(await resolve_checked("feeds.internal", 80, resolver, allow)) == "10.0.0.5"
    with pytest.raises(BlockedError):
        await resolve_checked("other.internal", 80, resolver, allow)


async def test_allow_listed_network_passes_only_inside_it() -> None:
    allow = AllowList.parse(["10.0.0.0/24"])
    resolver = stub({"a.internal": ["10.0.0.9"], "b.internal": ["10.0.0.9", "10.0.1.9"]})
    assert str(await resolve_checked("a.internal", 80, resolver, allow)) == "10.0.0.9"
    with pytest.raises(BlockedError, match=r"10\.0\.1\.9"):
        await resolve_checked("b.internal", 80, resolver, allow)


@pytest.mark.parametrize("scheme", ["file", "gopher", "ftp", "dict", "javascript", ""])
def test_only_http_schemes(scheme: str) -> None:
    with pytest.raises(BlockedError, match="only http and https"):
        check_scheme(scheme, f"{scheme}://x/")


def test_http_schemes_pass() -> None:
    check_scheme("http", "http://x/")
    check_scheme("HTTPS", "https://x/")


async def test_system_resolver_answers_for_localhost() -> None:
    answers = await system_resolver("localhost", 80)
    assert answers and all(blocked_reason(ipaddress.ip_address(a)) == "loopback" for a in answers)
