"""SSRF guard: which addresses a poll may reach, and name resolution that the fetcher pins.

Source URLs come from a YAML file that more people can edit than intended, and redirects and DNS
answers are controlled by the remote side. So every hop is resolved here, every answer is
checked, and the fetcher connects to the checked address itself (no second lookup that DNS
rebinding could change). Network egress rules remain the real control; this is the second line.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Resolves (host, port) to IP address strings; raise `ResolveError` (or OSError) on failure.
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

ALLOWED_SCHEMES = frozenset({"http", "https"})

# Ordered: the first matching range names the reason in the error message.
_BLOCKED: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "'this network' (0.0.0.0/8)"),
    ("127.0.0.0/8", "loopback"),
    ("10.0.0.0/8", "private (RFC 1918)"),
    ("172.16.0.0/12", "private (RFC 1918)"),
    ("192.168.0.0/16", "private (RFC 1918)"),
    ("169.254.0.0/16", "link-local (cloud metadata service)"),
    ("100.64.0.0/10", "carrier-grade NAT (RFC 6598)"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation (TEST-NET-1)"),
    ("198.18.0.0/15", "benchmarking (RFC 2544)"),
    ("198.51.100.0/24", "documentation (TEST-NET-2)"),
    ("203.0.113.0/24", "documentation (TEST-NET-3)"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("fe80::/10", "link-local"),
    ("fc00::/7", "unique local (ULA)"),
    ("ff00::/8", "multicast"),
    ("100::/64", "discard-only"),
    ("2001:db8::/32", "documentation"),
    ("fec0::/10", "site-local (deprecated)"),
)
_BLOCKED_NETS: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(net), reason) for net, reason in _BLOCKED
)
# IPv6 forms that embed an IPv4 address: the embedded address decides.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_V4_COMPATIBLE = ipaddress.ip_network("::/96")


class GuardError(Exception):
    """Base of the refusals raised here; the message is fit for an operator."""


class BlockedError(GuardError):
    """The URL or an address it resolves to is not allowed."""


class ResolveError(GuardError):
    """The host name did not resolve."""


def parse_ip(host: str) -> IPAddress | None:
    """The address a host string denotes literally, including legacy IPv4 forms.

    `2130706433`, `0x7f.1` and `127.1` are all 127.0.0.1 to the C resolver, so they are treated
    as literals here rather than handed to a resolver that might not agree.
    """
    text = host.strip("[]")
    if not text:
        return None
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        pass
    if ":" in text:
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except (OSError, ValueError):
        return None


def embedded_ipv4(ip: IPAddress) -> IPAddress:
    """Unmap IPv4-mapped, IPv4-compatible and NAT64 IPv6 addresses to the IPv4 inside."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in _NAT64 or (ip in _V4_COMPATIBLE and int(ip) > 1):
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def blocked_reason(ip: IPAddress) -> str | None:
    """Why `ip` must not be fetched, or None when it is a public unicast address."""
    inner = embedded_ipv4(ip)
    for net, reason in _BLOCKED_NETS:
        if inner.version == net.version and inner in net:
            return reason
    if inner.is_multicast:
        return "multicast"
    if not inner.is_global:
        return "not globally routable"
    return None


@dataclass(frozen=True, slots=True)
class AllowList:
    """Hosts and networks that may be fetched although private (`MONITOR_ALLOW_PRIVATE_HOSTS`)."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, items: Iterable[str]) -> AllowList:
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in items:
            item = raw.strip()
            if not item:
                continue
            if "/" in item:
                networks.append(ipaddress.ip_network(item, strict=False))
                continue
            literal = parse_ip(item)
            if literal is not None:
                networks.append(ipaddress.ip_network(literal))
            else:
                hosts.add(item.lower().rstrip("."))
        return cls(frozenset(hosts), tuple(networks))

    def allows_host(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts

    def names(self, host: str) -> bool:
        """`host` is listed by name, or is an IP literal inside a listed network."""
        literal = parse_ip(host.strip("[]"))
        return self.allows_ip(literal) if literal is not None else self.allows_host(host)

    def allows_ip(self, ip: IPAddress) -> bool:
        candidates = {ip, embedded_ipv4(ip)}
        return any(c.version == n.version and c in n for c in candidates for n in self.networks)


def check_scheme(scheme: str, url_for_message: str) -> None:
    if scheme.lower() not in ALLOWED_SCHEMES:
        raise BlockedError(
            f"{url_for_message}: scheme {scheme or '(none)'!r} is not allowed, only http and https"
        )


def check_address(host: str, ip: IPAddress, allow: AllowList) -> None:
    """Refuse `ip` (an answer for `host`) unless it is public or allow-listed."""
    reason = blocked_reason(ip)
    if reason is None or allow.allows_host(host) or allow.allows_ip(ip):
        return
    subject = host if parse_ip(host) is not None else f"{host} resolves to {ip}, which"
    raise BlockedError(
        f"{subject} is {reason}; add the host or its network to MONITOR_ALLOW_PRIVATE_HOSTS "
        "if this source is meant to be internal"
    )


async def system_resolver(host: str, port: int) -> list[str]:
    """All addresses of `host` from the operating system's resolver (A and AAAA)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ResolveError(f"cannot resolve {host}: {exc.strerror or exc}") from exc
    seen: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in seen:
            seen.append(address)
    return seen


async def resolve_checked(host: str, port: int, resolver: Resolver, allow: AllowList) -> IPAddress:
    """Resolve `host`, refuse it if any answer is blocked, and return the address to connect to.

    Every answer must pass: an attacker who controls DNS could otherwise mix a public address
    with a private one and win whenever the private one is picked.
    """
    literal = parse_ip(host)
    if literal is not None:
        check_address(host, literal, allow)
        return literal
    try:
        answers = await resolver(host, port)
    except GuardError:
        raise
    except OSError as exc:
        raise ResolveError(f"cannot resolve {host}: {exc}") from exc
    addresses: list[IPAddress] = []
    for answer in answers:
        ip = parse_ip(answer)
        if ip is None:
            raise ResolveError(f"resolver returned {answer!r} for {host}, not an IP address")
        addresses.append(ip)
    if not addresses:
        raise ResolveError(f"cannot resolve {host}: no addresses")
    for ip in addresses:
        check_address(host, ip, allow)
    # Prefer IPv4: more hosts answer on it, and the check above covered every answer anyway.
    addresses.sort(key=lambda a: a.version)
    return addresses[0]
