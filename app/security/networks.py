"""The client IP and maintainer networks: pure functions, no Flask."""
import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_ip(text):
    """An address from untrusted text, IPv4-mapped IPv6 normalised to IPv4; None when unparsable."""
    if not isinstance(text, str):
        return None
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if "%" in text:  # a scope id says nothing about the network
        return None
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def parse_network(text):
    """A network from a CIDR (or a single address); raises ValueError with a readable message."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("Enter a network in CIDR form, e.g. 203.0.113.0/24 or 2001:db8::/48.")
    text = text.strip()
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError:
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(f"{text!r} is not an IP network in CIDR form (e.g. 203.0.113.0/24).") from None
        raise ValueError(f"{text!r} has host bits set; did you mean {ipaddress.ip_network(text, strict=False)}?") from None
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            network = ipaddress.ip_network(f"{mapped}/{network.prefixlen - 96}")
    return network


def parse_networks(items):
    """Networks from a configuration list; an invalid entry is a configuration error."""
    return tuple(parse_network(item) for item in items)


def in_networks(ip, networks):
    """True only for a real address inside one of the networks; fails closed on anything else."""
    if ip is None:
        return False
    return any(ip.version == net.version and ip in net for net in networks)


def client_ip(peer, forwarded_for, trusted_proxies):
    """The address of the client, or None when it cannot be trusted.

    The socket peer is the client unless it is one of our trusted proxies; then the
    X-Forwarded-For chain is read right to left, skipping trusted proxies, and the first
    address that is not one is the client. Anything unparsable on the way fails closed.
    A trusted proxy is never the client: a request from one that names no other address
    (no header, or only proxies in it) comes from someone unknown, and gets None.
    """
    ip = parse_ip(peer)
    if ip is None:
        return None
    if not in_networks(ip, trusted_proxies):
        return ip
    hops = [hop for header in (forwarded_for or []) for hop in header.split(",")]
    for hop in reversed(hops):
        hop_ip = parse_ip(hop)
        if hop_ip is None:
            return None
        if not in_networks(hop_ip, trusted_proxies):
            return hop_ip
    return None


def is_whole_internet(network):
    """A /0: every address of its family (0.0.0.0/0, ::/0, and ::ffff:0:0/96 once normalised)."""
    return network.prefixlen == 0


def needs_wide_confirmation(network, min_prefix_v4, min_prefix_v6):
    """Is this network wider than the limit for its family (a shorter prefix than the minimum)?"""
    limit = min_prefix_v4 if network.version == 4 else min_prefix_v6
    return network.prefixlen < limit


def proxy_overlaps(trusted_proxies, maintainer_networks):
    """(proxy, network) pairs where a trusted proxy's address range and a maintainer network share
    addresses, in the order given; strings are parsed like the configuration."""
    proxies = [p if not isinstance(p, str) else parse_network(p) for p in trusted_proxies]
    networks = [n if not isinstance(n, str) else parse_network(n) for n in maintainer_networks]
    return [
        (proxy, network)
        for proxy in proxies
        for network in networks
        if proxy.version == network.version and proxy.overlaps(network)
    ]
