"""The client-IP helper: who is the client, given a peer and an X-Forwarded-For chain."""
import ipaddress

import pytest

from app.security.networks import client_ip, in_networks, parse_ip, parse_network, parse_networks

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
        ("10.0.0.1", [], "10.0.0.1"),                                          # proxy without header
        ("10.0.0.1", ["10.0.1.9"], "10.0.1.9"),                                # every hop a proxy
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
