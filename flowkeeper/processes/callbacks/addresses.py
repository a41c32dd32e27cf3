"""The address policy of callbacks: which hosts they may send requests to (allowed hosts,
blocked networks, the addresses a name resolves to), why one is refused, and URLs as listings
and messages show them.

Where requests may go (:class:`AddressPolicy`): not to loopback, link-local (the cloud
metadata service 169.254.169.254 among them), unspecified, multicast or reserved addresses,
unless the operator allows them (``Engine(callback_allowed_hosts=[…])``); private networks are
allowed unless blocked (``Engine(callback_blocked_networks=[…])``). A URL whose host is such an
address is refused when it is added (names are not resolved then); every connection resolves
its host and is refused, before anything is sent, if any address it resolves to is forbidden,
and it connects only to the addresses it checked (no second look-up that DNS could answer
differently). URLs with credentials (``user:password@``) are refused: the token is the secret.
Listings and messages show URLs without their query; only the POST uses the full URL.

How connections are made to the addresses checked here is in
:mod:`flowkeeper.processes.callbacks.transport`.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from flowkeeper.errors import InvalidArgument

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_METADATA = frozenset(ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254"))
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LOOPBACK = ipaddress.ip_address("127.0.0.1")
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?", re.IGNORECASE)


class AddressPolicy:
    """Which hosts callbacks may send requests to (``engine.callbacks.policy``).

    Refused by default: loopback (the server itself), link-local (among them the cloud
    metadata service, 169.254.169.254), unspecified, multicast and reserved addresses, and the
    IPv4 ones among them written as IPv6 (``::ffff:127.0.0.1``, ``64:ff9b::a9fe:a9fe``).
    Private networks (10/8, 172.16/12, 192.168/16, fc00::/7) are allowed: callback services
    usually live on the operator's network.

    ``allowed_hosts``: host names, addresses and networks (``"callbacks.internal"``,
    ``"127.0.0.1"``, ``"fd00::/8"``) allowed even so; a name is allowed whatever it resolves to,
    an address or network wherever it is named from. ``blocked_networks``: networks refused as
    well (``"10.0.0.0/8"``); an allowed host wins over them. ``["0.0.0.0/0", "::/0"]`` allows
    every address.
    """

    def __init__(
        self, allowed_hosts: Iterable[str] = (), blocked_networks: Iterable[str] = ()
    ) -> None:
        names: set[str] = set()
        networks: list[IPNetwork] = []
        what = "callback_allowed_hosts"
        for entry in _entries(allowed_hosts, what):
            network = (
                _checked_network(entry, what)
                if "/" in entry and "://" not in entry
                else _network(entry)
            )
            if network is not None:
                networks.append(network)
            elif _HOST_NAME.fullmatch(entry):
                names.add(normal_name(entry))
            else:
                raise InvalidArgument(
                    f"callback_allowed_hosts: {entry!r} is neither a host name nor an address or "
                    "network; write 'callbacks.internal', '127.0.0.1' or '10.0.0.0/8' (no "
                    "scheme, port or wildcard)"
                )
        self.allowed_names = frozenset(names)
        self.allowed_networks = tuple(networks)
        what = "callback_blocked_networks"
        self.blocked_networks = tuple(
            _checked_network(entry, what) for entry in _entries(blocked_networks, what)
        )

    def __repr__(self) -> str:
        allowed = sorted(self.allowed_names) + [str(n) for n in self.allowed_networks]
        blocked = [str(n) for n in self.blocked_networks]
        return f"AddressPolicy(allowed_hosts={allowed!r}, blocked_networks={blocked!r})"

    def why_refused(self, address: IPAddress) -> str | None:
        """What makes ``address`` one that callbacks may not reach (``"a loopback address
        (this server itself)"``), or None if they may."""
        inner = _embedded_ipv4(address)
        if any(a in n for a in (address, inner) if a for n in self.allowed_networks):
            return None
        # An IPv6 form of an IPv4 address (which ipaddress counts as reserved) is what it
        # stands for: NAT64 reaches public IPv4 services that way, and ::ffff:127.0.0.1 this one.
        judged = address if inner is None else inner
        why = _special(judged) or next(
            (
                f"an address in {network}, which callback_blocked_networks refuses"
                for network in self.blocked_networks
                if judged in network
            ),
            None,
        )
        if why is None or inner is None:
            return why
        return f"the IPv6 form of {inner}, {why}"

    def refusal_of_host(self, host: str) -> Refused | None:
        """Why a URL's ``host`` is refused without resolving it — an address the policy
        refuses (in any notation: ``127.1``, ``2130706433``), or ``localhost`` unless loopback
        is allowed — or None. Other names are checked where connections are made."""
        if normal_name(host) in self.allowed_names:
            return None
        address = _literal_address(host)
        if address is not None:
            why = self.why_refused(address)
            if why is None:
                return None
            # 127.1 is 127.0.0.1; ::ffff:127.0.0.1 is shown as it is written.
            return Refused(host, host if ":" in host else str(address), why)
        name = normal_name(host)
        if (name == "localhost" or name.endswith(".localhost")) and self.why_refused(_LOOPBACK):
            return Refused(host, None, "a loopback name (this server itself)")
        return None

    def check_url(self, url: str) -> str:
        """``url``, or ``InvalidArgument`` if :meth:`refusal_of_host` refuses its host."""
        refused = self.refusal_of_host(urlsplit(url).hostname or "")
        if refused is None:
            return url
        shown = url_to_show(url)
        raise InvalidArgument(
            f"url {shown} is refused: {refused.subject()}; callbacks may not reach such "
            f"addresses. Register a service at another address, or have the server's operator "
            f"allow this one: {refused.allow()} (and --allowed-host for `flowkeeper callbacks "
            "add`)"
        )

    def addresses(self, host: str, port: int) -> list[str]:
        """The addresses ``host`` resolves to, to connect to in order; :class:`Refused` if
        one of them is refused (``OSError`` if it does not resolve)."""
        found: list[str] = []
        for family, _, _, _, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
            address = str(sockaddr[0])
            if family == socket.AF_INET6 and len(sockaddr) == 4 and sockaddr[3]:
                address = f"{address}%{sockaddr[3]}"  # a link-local address's scope
            if address not in found:
                found.append(address)
        if normal_name(host) in self.allowed_names:
            return found
        for address in found:
            why = self.why_refused(ipaddress.ip_address(address))
            if why is not None:
                raise Refused(host, address, why)
        return found


class Refused(Exception):
    """A host the address policy refuses: ``host`` is (or resolves to) ``address``, ``why``."""

    def __init__(self, host: str, address: str | None, why: str) -> None:
        super().__init__(host, address, why)
        self.host = host
        self.address = address
        self.why = why

    def subject(self) -> str:
        if self.address is None or self.address == self.host:
            return f"its host {self.host} is {self.why}"
        if _literal_address(self.host) is not None:  # 127.1, 2130706433, …
            return f"its host {self.host} ({self.address}) is {self.why}"
        return f"its host {self.host} resolves to {self.address}, {self.why}"

    def allow(self) -> str:
        address = None if self.address is None else self.address.split("%")[0]  # no scope
        if address is None or _literal_address(self.host) is not None:
            return f"Engine(callback_allowed_hosts=[{(address or normal_name(self.host))!r}])"
        return (
            f"Engine(callback_allowed_hosts=[{normal_name(self.host)!r}]) (this name) or "
            f"[{address!r}] (this address)"
        )

    def reason(self) -> str:
        """For ``CallbackFailed``: what was refused, and what to change."""
        return (
            f"{self.subject()}; callbacks may not reach such addresses, so nothing was sent. "
            f"Register the service at another address, or have the server's operator allow "
            f"this one: {self.allow()}"
        )


def _entries(value: Iterable[str], what: str) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise InvalidArgument(
            f"{what} must be a list of strings (such as [{'127.0.0.1'!r}]), not {value!r}"
        )
    found = list(value)
    for entry in found:
        if not isinstance(entry, str) or not entry.strip():
            raise InvalidArgument(f"{what} must list non-empty strings, not {entry!r}")
    return [entry.strip() for entry in found]


def _network(entry: str) -> IPNetwork | None:
    """``entry`` as a network (an address: a network of one), or None."""
    try:
        return ipaddress.ip_network(entry)
    except ValueError:
        return None


def _checked_network(entry: str, what: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(entry)
    except ValueError as error:
        raise InvalidArgument(
            f"{what}: {entry!r} is not an address or network such as '10.0.0.0/8' ({error})"
        ) from None


def normal_name(host: str) -> str:
    """``host`` as names are compared: in lower case, without a final dot."""
    return host.lower().rstrip(".")


def _literal_address(host: str) -> IPAddress | None:
    """``host`` as an address, in any notation the resolver reads as one without DNS
    (``127.1``, ``0x7f000001`` and ``2130706433`` are 127.0.0.1); None for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if not host:
        return None
    try:
        found = socket.getaddrinfo(host, None, flags=socket.AI_NUMERICHOST)
    except (OSError, UnicodeError, ValueError):
        return None
    return ipaddress.ip_address(found[0][4][0]) if found else None


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped ``::ffff:a.b.c.d``, NAT64)."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return None


def _special(address: IPAddress) -> str | None:
    if address in _METADATA:
        return "a link-local address (the cloud metadata service)"
    if address.is_loopback:
        return "a loopback address (this server itself)"
    if address.is_unspecified:
        return "an unspecified address (this server itself)"
    if address in _THIS_NETWORK:
        return "an unspecified address ('this network', 0.0.0.0/8)"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_reserved:
        return "a reserved address"
    return None


def url_to_show(url: str) -> str:
    """``url`` without credentials, query and fragment (which may hold secrets)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
