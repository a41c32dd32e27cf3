"""How callback requests reach a service: the pooled ``httpx`` clients (:class:`Clients`) — one
that connects directly, through a network backend that resolves each host, checks every
address with the :class:`~flowkeeper.processes.callbacks.addresses.AddressPolicy` and connects
only to the addresses it checked, and one per proxy the environment names. ``httpx`` is
imported only when a request is made (:func:`load_httpx`): the core works without it.
"""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from flowkeeper.errors import ConfigurationError
from flowkeeper.processes.callbacks.addresses import AddressPolicy, normal_name


class Clients:
    """The pooled ``httpx`` clients callbacks send with: one that connects directly, through
    the address policy, and one per proxy the environment names."""

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy
        self._direct: Any = None
        self._proxied: dict[str, Any] = {}
        self._proxies: dict[str, str] | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the clients and their pooled connections."""
        with self._lock:
            clients = [self._direct, *self._proxied.values()]
            self._direct, self._proxied, self._proxies = None, {}, None
        for client in clients:
            if client is not None:
                client.close()

    def client_for(self, url: str) -> Any:
        """The client that sends to ``url``: through the proxy the environment names for it
        (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``, read once), else the
        direct one, whose connections the address policy checks."""
        with self._lock:
            if self._proxies is None:
                self._proxies = urllib.request.getproxies_environment()
            parts = urlsplit(url)
            proxy = self._proxies.get(parts.scheme) or self._proxies.get("all")
            if proxy and not _no_proxy(parts.hostname or "", self._proxies.get("no", "")):
                client = self._proxied.get(proxy)
                if client is None:
                    httpx = load_httpx()
                    # trust_env=False: no credentials from ~/.netrc on a tenant's requests.
                    client = self._proxied[proxy] = httpx.Client(
                        proxy=proxy, verify=httpx.create_ssl_context(), trust_env=False
                    )
                return client
            if self._direct is None:
                self._direct = _direct_client(self._policy)
            return self._direct


def _no_proxy(host: str, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` (``*``, or names whose subdomains match too) names ``host``."""
    host = normal_name(host)
    for entry in no_proxy.split(","):
        name = normal_name(entry.strip().lstrip("."))
        if entry.strip() == "*" or (name and (host == name or host.endswith(f".{name}"))):
            return True
    return False


def _direct_client(policy: AddressPolicy) -> Any:
    """An ``httpx.Client`` whose every new connection resolves its host, is refused (before
    anything is sent) if one of the addresses is forbidden, and connects only to the
    addresses it checked: DNS cannot answer one thing to the check and another to the
    connection."""
    httpx = load_httpx()
    import httpcore  # httpx's own transport

    class CheckedBackend(httpcore.SyncBackend):
        def connect_tcp(
            self,
            host: str,
            port: int,
            timeout: float | None = None,
            local_address: str | None = None,
            socket_options: Iterable[Any] | None = None,
        ) -> httpcore.NetworkStream:
            try:
                addresses = policy.addresses(host, port)
            except (OSError, UnicodeError) as error:  # not resolved: as httpcore reports it
                raise httpcore.ConnectError(str(error)) from None
            failed: Exception = httpcore.ConnectError(f"{host} resolves to no address")
            for address in addresses:  # in order, as socket.create_connection tries them
                try:
                    return super().connect_tcp(
                        address, port, timeout, local_address, socket_options
                    )
                except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                    failed = error
            raise failed

    transport = httpx.HTTPTransport(trust_env=False)
    # httpx has no public way to choose how its transport connects; it sends through _pool,
    # replaced by the same pool (httpx's default limits) over the checked backend. The tests
    # of the address policy fail should a version of httpx stop sending through it.
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        max_connections=100,
        max_keepalive_connections=20,
        keepalive_expiry=5.0,
        network_backend=CheckedBackend(),
    )
    # trust_env=False: proxies are chosen by the caller, and no credentials come from ~/.netrc.
    return httpx.Client(transport=transport, follow_redirects=False, trust_env=False)


def load_httpx() -> Any:
    """The ``httpx`` module; ``ConfigurationError`` saying how to install it if it is not."""
    try:
        import httpx
    except ImportError:
        raise ConfigurationError(
            "HTTP callbacks need httpx, which is not installed; install it with: "
            "pip install 'flowkeeper[server]'"
        ) from None
    return httpx
