"""The client-IP helper: who is the client, given a peer and an X-Forwarded-For chain."""
import ipaddress

import pytest

from app.security.networks import (
    client_ip, in_networks, is_whole_internet, needs_wide_confirmation, parse_ip, parse_network, parse_networks,
    proxy_overlaps,
)

PROXIES = parse_networks(["10.0.0.1", "10.0.1.0/24", "fd00::1"])


def ip(text):
    return ipaddress.ip_address(text)


@pytest.mark.parametrize(
    "peer, header, expected",
    [
        ("198.51.100.7", [], "198.51.100.7"),                                   # direct peer
        ("198.51.100.7", ["192.0.2.1"], "198.51.100.7"),                       # forged header, untrusted peer
        ("10.0.0.1", ["192.0.2.1"], "192.0.2.1"),                              # one trusted hop
        ("10.0.0.1", ["192.0.2.1, 10.0.1.5"], "192.0.2.1"),                    # two trusted hops
        ("10.0.0.1", ["192.0.2.1", "10.0.1.5"], "192.0.2.1"),                  # hops in several headers
        ("10.0.0.1", ["6.6.6.6, 192.0.2.1, 10.0.1.5"], "192.0.2.1"),           # client-made prefix ignored
        ("2001:db8::5", [], "2001:db8::5"),                                    # IPv6 peer
        ("fd00::1", ["2001:db8::7"], "2001:db8::7"),                           # IPv6 proxy
        ("::ffff:198.51.100.7", [], "198.51.100.7"),                           # IPv4-mapped peer
        ("10.0.0.1", ["::ffff:192.0.2.1"], "192.0.2.1"),                       # IPv4-mapped in header
        ("::ffff:10.0.0.1", ["192.0.2.1"], "192.0.2.1"),                       # mapped proxy is still the proxy
        ("10.0.0.1", ["[2001:db8::9]"], "2001:db8::9"),                        # bracketed IPv6
    ],
)
def test_client_ip_resolves(peer, header, expected):
    assert client_ip(peer, header, PROXIES) == ip(expected)


@pytest.mark.parametrize(
    "peer, header",
    [
        ("10.0.0.1", ["not-an-ip"]),            # garbage from a trusted proxy
        ("10.0.0.1", ["192.0.2.1, garbage"]),   # garbage on the right is not skipped over
        ("10.0.0.1", ["192.0.2.1,,"]),          # empty hop
        ("10.0.0.1", ["192.0.2.1:8080"]),       # port suffix is not an address
        ("", []),                               # no peer at all
        (None, []),
        ("fe80::1%eth0", []),                   # scoped address
        ("garbage", ["192.0.2.1"]),
    ],
)
def test_client_ip_fails_closed(peer, header):
    assert client_ip(peer, header, PROXIES) is None


def test_header_ignored_without_trusted_proxies():
    assert client_ip("10.0.0.1", ["192.0.2.1"], ()) == ip("10.0.0.1")


def test_empty_network_list_denies_everyone():
    assert not in_networks(ip("127.0.0.1"), [])
    assert not in_networks(None, parse_networks(["0.0.0.0/0"]))


def test_networks_match_by_family():
    nets = parse_networks(["127.0.0.1/32", "::1/128", "2001:db8::/32"])
    assert in_networks(ip("127.0.0.1"), nets)
    assert in_networks(ip("::1"), nets)
    assert in_networks(ip("2001:db8:1::1"), nets)
    assert not in_networks(ip("127.0.0.2"), nets)
    assert not in_networks(ip("2001:db9::1"), nets)
    assert in_networks(parse_ip("::ffff:127.0.0.1"), nets)


def test_mapped_network_is_normalised():
    assert parse_network("::ffff:192.0.2.0/120") == ipaddress.ip_network("192.0.2.0/24")


@pytest.mark.parametrize("text", ["", "nonsense", "300.1.1.1/32", "10.0.0.0/33", "10.0.0.1/24"])
def test_invalid_networks_are_refused(text):
    with pytest.raises(ValueError):
        parse_network(text)


@pytest.mark.parametrize(
    "peer, header",
    [
        ("10.0.0.1", []),                        # the proxy itself, no header: who is behind it is unknown
        ("::ffff:10.0.0.1", []),
        ("fd00::1", []),
        ("10.0.0.1", [""]),                      # an empty header names nobody
        ("10.0.0.1", ["  "]),
        ("10.0.0.1", ["10.0.1.9"]),              # every hop a trusted proxy
        ("10.0.0.1", ["10.0.1.9, 10.0.0.1"]),
        ("10.0.0.1", ["10.0.1.9", "fd00::1"]),
    ],
)
def test_a_trusted_proxy_is_never_the_client(peer, header):
    assert client_ip(peer, header, PROXIES) is None


def test_proxy_overlaps_names_each_pair():
    proxies = parse_networks(["10.0.0.1", "10.0.1.0/24", "fd00::1"])
    maintainers = parse_networks(["10.0.0.0/8", "10.0.1.128/25", "198.51.100.0/24", "fd00::/64", "2001:db8::/48"])
    assert proxy_overlaps(proxies, maintainers) == [
        (ipaddress.ip_network("10.0.0.1/32"), ipaddress.ip_network("10.0.0.0/8")),
        (ipaddress.ip_network("10.0.1.0/24"), ipaddress.ip_network("10.0.0.0/8")),
        (ipaddress.ip_network("10.0.1.0/24"), ipaddress.ip_network("10.0.1.128/25")),
        (ipaddress.ip_network("fd00::1/128"), ipaddress.ip_network("fd00::/64")),
    ]
    assert proxy_overlaps(proxies, parse_networks(["198.51.100.0/24", "::/1"])) == []
    assert proxy_overlaps((), maintainers) == [] and proxy_overlaps(proxies, ()) == []


@pytest.mark.parametrize("text", ["0.0.0.0/0", "::/0", "::ffff:0:0/96", "::ffff:0.0.0.0/96"])
def test_whole_internet_in_every_spelling(text):
    assert is_whole_internet(parse_network(text))


@pytest.mark.parametrize("text", ["0.0.0.0/1", "::/1", "::ffff:0:0/97", "198.51.100.0/24"])
def test_not_the_whole_internet(text):
    assert not is_whole_internet(parse_network(text))


@pytest.mark.parametrize(
    "text, wide",
    [
        ("10.0.0.0/15", True), ("10.0.0.0/16", False), ("198.51.100.7", False),
        ("::ffff:10.0.0.0/111", True), ("::ffff:10.0.0.0/112", False),
        ("2001:db8::/47", True), ("2001:db8::/48", False), ("::1", False),
    ],
)
def test_wide_networks_need_confirmation(text, wide):
    assert needs_wide_confirmation(parse_network(text), 16, 48) is wide
