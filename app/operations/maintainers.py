"""Changes to the maintainer network list, shared by the platform page and the CLI."""
import sqlalchemy as sa
from flask import current_app

from app import audit
from app.extensions import db
from app.models import MaintainerNetwork
from app.security.client import trusted_proxies
from app.security.networks import in_networks, is_whole_internet, needs_wide_confirmation, parse_network, proxy_overlaps


class MaintainerListError(ValueError):
    """A change to the list that was refused; the message says why."""


class WouldLockOut(MaintainerListError):
    pass


class NeedsWideConfirmation(MaintainerListError):
    """The network is wider than the limit: it is added only when the caller confirms it."""

    def __init__(self, message, network):
        super().__init__(message)
        self.network = network


def list_networks():
    return db.session.scalars(db.select(MaintainerNetwork).order_by(MaintainerNetwork.added_at)).all()


def _networks_after(remove_cidr=None, add=None):
    networks = [parse_network(n.cidr) for n in list_networks() if n.cidr != remove_cidr]
    return networks + ([add] if add is not None else [])


def _show(network):
    """A single-address network as the address, any other as its CIDR."""
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return str(network)


def _trusted_proxies():
    try:
        return trusted_proxies(current_app)
    except ValueError as error:
        raise MaintainerListError(f"TRUSTED_PROXIES is not valid: {error}") from None


def _wide_limits():
    """The shortest prefix (IPv4, IPv6) a network may have without a confirmation."""
    return current_app.config["MAINTAINER_MIN_PREFIX_V4"], current_app.config["MAINTAINER_MIN_PREFIX_V6"]


def add_network(cidr, label, added_by, *, caller_ip=None, audit_actor=None, confirm_wide=False):
    """Add a network. Refused: anything unparsable, a /0 (the whole internet, in any spelling), a
    network that shares addresses with a trusted proxy, and, unless ``confirm_wide``, a network
    wider than MAINTAINER_MIN_PREFIX_V4 / _V6 (NeedsWideConfirmation)."""
    label = (label or "").strip()

    def refuse(target, message, outcome="failure", detail=None, error_class=MaintainerListError, **extra):
        audit.record("maintainers.add", target=str(target), outcome=outcome, detail=detail or message,
                     actor=audit_actor)
        raise error_class(message, **extra)

    try:
        network = parse_network(cidr)
    except ValueError as error:
        refuse(cidr, str(error))
    # An IPv4-mapped spelling (::ffff:0:0/96) says which IPv4 network it really is.
    spelled = f"{cidr.strip()} is {network}: " if ":" in cidr and network.version == 4 else ""
    if is_whole_internet(network):
        refuse(network, f"{spelled}{network} is every address on the internet; it can never be a maintainer "
                        "network. Add the networks you actually connect from (e.g. 203.0.113.0/24).")
    for proxy, _ in proxy_overlaps(_trusted_proxies(), [network]):
        relation = "contains" if network.supernet_of(proxy) or network == proxy else "overlaps"
        refuse(network, f"{spelled}{network} {relation} the trusted proxy {_show(proxy)} (TRUSTED_PROXIES). "
                        "A proxy must never be inside a maintainer network: whatever reaches the app through it "
                        "without a client address would count as a maintainer. Add a narrower network.")
    if not label:
        raise MaintainerListError("A label is required: say whose network this is (e.g. 'Head office VPN').")
    if db.session.scalar(db.select(MaintainerNetwork).where(MaintainerNetwork.cidr == str(network))):
        raise MaintainerListError(f"{network} is already in the maintainer list.")
    limits = _wide_limits()
    limit = limits[0] if network.version == 4 else limits[1]
    if not confirm_wide and needs_wide_confirmation(network, *limits):
        refuse(network, f"{spelled}{network} is a very wide network (/{network.prefixlen}; anything wider than "
                        f"/{limit} must be confirmed): every address in it could run backups and restores.",
               outcome="denied", detail=f"wider than /{limit}; not confirmed",
               error_class=NeedsWideConfirmation, network=network)
    entry = MaintainerNetwork(cidr=str(network), label=label, added_by=added_by)
    db.session.add(entry)
    db.session.commit()
    audit.record("maintainers.add", target=str(network), detail=label, actor=audit_actor)
    return entry


def remove_network(cidr, *, caller_ip=None, confirm_lockout=False, audit_actor=None):
    """Remove a network; refuse when it would shut the caller out, unless they confirm."""
    try:
        cidr = str(parse_network(cidr))
    except ValueError as error:
        raise MaintainerListError(str(error)) from None
    entry = db.session.scalar(db.select(MaintainerNetwork).where(MaintainerNetwork.cidr == cidr))
    if entry is None:
        raise MaintainerListError(f"{cidr} is not in the maintainer list.")
    if caller_ip is not None and not confirm_lockout and not in_networks(caller_ip, _networks_after(remove_cidr=cidr)):
        audit.record("maintainers.remove", target=cidr, outcome="denied",
                     detail="would lock the caller out; not confirmed", actor=audit_actor)
        raise WouldLockOut(
            f"Removing {cidr} would lock you out: you connect from {caller_ip}, and no other network in "
            "the list contains it. Tick the confirmation to remove it anyway."
        )
    db.session.delete(entry)
    db.session.commit()
    audit.record("maintainers.remove", target=cidr, detail=entry.label, actor=audit_actor)


def check_proxies_outside_maintainers(app):
    """Start-up check: no trusted proxy may share an address with a maintainer network.

    Reads app.config["TRUSTED_PROXIES"] and the maintainer list (platform database). Does nothing
    without trusted proxies, or while the maintainer table does not exist yet (before the first
    migration). Raises RuntimeError naming every overlapping proxy and network, or when
    TRUSTED_PROXIES is not valid.
    """
    try:
        proxies = trusted_proxies(app)
    except ValueError as error:
        raise RuntimeError(f"TRUSTED_PROXIES is not valid: {error}") from None
    if not proxies:
        return
    with app.app_context():
        engine = db.engines[MaintainerNetwork.__bind_key__]
        if not sa.inspect(engine).has_table(MaintainerNetwork.__tablename__):
            return
        rows = db.session.execute(db.select(MaintainerNetwork.cidr, MaintainerNetwork.label)).all()
    labels, networks = {}, []
    for cidr, label in rows:
        try:
            network = parse_network(cidr)
        except ValueError:
            continue  # the gate ignores (and logs) it too
        labels[network] = label
        networks.append(network)
    overlaps = proxy_overlaps(proxies, networks)
    if overlaps:
        pairs = "; ".join(
            f"trusted proxy {_show(proxy)} {'is inside' if proxy.subnet_of(network) else 'overlaps'} "
            f"maintainer network {network} ({labels[network]!r})"
            for proxy, network in overlaps
        )
        raise RuntimeError(
            f"Refusing to start: {pairs}. A proxy inside a maintainer network would make whatever reaches the "
            "app through it without a client address count as a maintainer. Take the proxy out of "
            "TRUSTED_PROXIES, or remove the network (e.g. `TRUSTED_PROXIES= flask maintainers remove "
            f"{overlaps[0][1]}`) and add narrower ones."
        )
