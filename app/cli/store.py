"""flask commands for the store and the platform: the maintainer list, accounts, demo data."""
import sys

import click
from flask import current_app
from flask.cli import AppGroup

from app import audit
from app.extensions import db
from app.models import ROLES, PlatformOperator, User
from app.operations.maintainers import (
    MaintainerListError, NeedsWideConfirmation, add_network, list_networks, remove_network,
)
from app.seed import seed_demo, seed_platform, store_is_empty

maintainers_cli = AppGroup("maintainers", help="Manage the maintainer network list (platform team).")
platform_cli = AppGroup("platform", help="Platform team accounts.")
users_cli = AppGroup("users", help="Store user accounts.")


def fail(message):
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)


@maintainers_cli.command("list")
def maintainers_list():
    """List the maintainer networks."""
    networks = list_networks()
    if not networks:
        click.echo("The maintainer list is empty: nobody can run a backup or restore.")
    for n in networks:
        click.echo(f"{n.cidr}\t{n.label}\tadded by {n.added_by} on {n.added_at:%Y-%m-%d %H:%M} UTC")


@maintainers_cli.command("add")
@click.argument("cidr")
@click.option("--label", required=True, help="Whose network this is.")
@click.option("--wide", is_flag=True,
              help="Confirm a network wider than MAINTAINER_MIN_PREFIX_V4 / _V6 (default /16 and /48): "
                   "every address in it can run backups and restores.")
def maintainers_add(cidr, label, wide):
    """Add a network (CIDR) to the maintainer list."""
    try:
        entry = add_network(cidr, label, "cli", audit_actor="cli", confirm_wide=wide)
    except NeedsWideConfirmation as error:
        fail(f"{error} Pass --wide to add it anyway.")
    except MaintainerListError as error:
        fail(str(error))
    click.echo(f"Added {entry.cidr} ({entry.label}).")


@maintainers_cli.command("remove")
@click.argument("cidr")
def maintainers_remove(cidr):
    """Remove a network from the maintainer list."""
    try:
        remove_network(cidr, audit_actor="cli")
    except MaintainerListError as error:
        fail(str(error))
    click.echo(f"Removed {cidr}.")


@platform_cli.command("create-operator")
@click.argument("email")
@click.option("--password", required=True, prompt=True, hide_input=True, confirmation_prompt=True)
def create_operator(email, password):
    """Create a platform operator account."""
    email = email.strip().lower()
    if db.session.scalar(db.select(PlatformOperator).where(PlatformOperator.email == email)):
        fail(f"An operator {email} already exists.")
    operator = PlatformOperator(email=email)
    operator.set_password(password)
    db.session.add(operator)
    db.session.commit()
    audit.record("platform.create_operator", target=email, actor="cli")
    click.echo(f"Created platform operator {email}.")


@users_cli.command("create")
@click.argument("email")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--password", required=True, prompt=True, hide_input=True, confirmation_prompt=True)
def create_user(email, role, password):
    """Create a store user."""
    email = email.strip().lower()
    if db.session.scalar(db.select(User).where(User.email == email)):
        fail(f"A user {email} already exists.")
    user = User(email=email, role=role)
    user.set_password(password)
    db.session.add(user)
    db.session.commit()
    audit.record("users.create", target=email, detail=role, actor="cli")
    click.echo(f"Created {role} {email}.")


@click.command("seed-demo")
def seed_demo_command():
    """Fill an empty store with demo data (does nothing when the store has users)."""
    seed_platform()
    if not store_is_empty():
        click.echo("The store already has data; not seeding it again.")
        return
    seed_demo(current_app.config["UPLOADS_DIR"])
    click.echo("Seeded the demo store.")
