"""Changes to the maintainer network list, shared by the platform page and the CLI."""
from app import audit
from app.extensions import db
from app.models import MaintainerNetwork
from app.security.networks import in_networks, parse_network


class MaintainerListError(ValueError):
    """A change to the list that was refused; the message says why."""


class WouldLockOut(MaintainerListError):
    pass


def list_networks():
    return db.session.scalars(db.select(MaintainerNetwork).order_by(MaintainerNetwork.added_at)).all()


def _networks_after(remove_cidr=None, add=None):
    networks = [parse_network(n.cidr) for n in list_networks() if n.cidr != remove_cidr]
    return networks + ([add] if add is not None else [])


def add_network(cidr, label, added_by, *, caller_ip=None, audit_actor=None):
    label = (label or "").strip()
    try:
        network = parse_network(cidr)
    except ValueError as error:
        audit.record("maintainers.add", target=str(cidr), outcome="failure", detail=str(error), actor=audit_actor)
        raise MaintainerListError(str(error)) from None
    if not label:
        raise MaintainerListError("A label is required: say whose network this is (e.g. 'Head office VPN').")
    if db.session.scalar(db.select(MaintainerNetwork).where(MaintainerNetwork.cidr == str(network))):
        raise MaintainerListError(f"{network} is already in the maintainer list.")
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
