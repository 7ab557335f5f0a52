"""flask commands: demo data, the maintainer list, accounts, and the demo server."""
import sys

import click
from flask import current_app
from flask.cli import AppGroup

from app.extensions import db
from app.models import ROLES, PlatformOperator, User

maintainers_cli = AppGroup("maintainers", help="Manage the maintainer network list (platform team).")
platform_cli = AppGroup("platform", help="Platform team accounts.")
users_cli = AppGroup("users", help="Store user accounts.")


def fail(message):
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)


@maintainers_cli.command("list")
def maintainers_list():
    """List the maintainer networks."""
    from app.platform.maintainers import list_networks

    networks = list_networks()
    if not networks:
        click.echo("The maintainer list is empty: nobody can run a backup or restore.")
    for n in networks:
        click.echo(f"{n.cidr}\t{n.label}\tadded by {n.added_by} on {n.added_at:%Y-%m-%d %H:%M} UTC")


@maintainers_cli.command("add")
@click.argument("cidr")
@click.option("--label", required=True, help="Whose network this is.")
def maintainers_add(cidr, label):
    """Add a network (CIDR) to the maintainer list."""
    from app.platform.maintainers import MaintainerListError, add_network

    try:
        entry = add_network(cidr, label, "cli", audit_actor="cli")
    except MaintainerListError as error:
        fail(str(error))
    click.echo(f"Added {entry.cidr} ({entry.label}).")


@maintainers_cli.command("remove")
@click.argument("cidr")
def maintainers_remove(cidr):
    """Remove a network from the maintainer list."""
    from app.platform.maintainers import MaintainerListError, remove_network

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
    from app import audit

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
    from app import audit

    audit.record("users.create", target=email, detail=role, actor="cli")
    click.echo(f"Created {role} {email}.")


@click.command("seed-demo")
def seed_demo_command():
    """Fill an empty store with demo data (does nothing when the store has users)."""
    from app.seed import seed_demo, seed_platform, store_is_empty

    seed_platform()
    if not store_is_empty():
        click.echo("The store already has data; not seeding it again.")
        return
    seed_demo(current_app.config["UPLOADS_DIR"])
    click.echo("Seeded the demo store.")


@click.command("run-demo")
@click.option("--host", default="127.0.0.1")
@click.option("--port", default=5000, type=int)
def run_demo_command(host, port):
    """Serve the app with an embedded Redis and a worker in this one process."""
    from app.demo import run_demo

    run_demo(current_app._get_current_object(), host, port)


def register(app):
    from app.backup.cli import backup_cli

    for command in (maintainers_cli, platform_cli, users_cli, seed_demo_command, run_demo_command, backup_cli):
        app.cli.add_command(command)
