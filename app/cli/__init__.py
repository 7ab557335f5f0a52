"""flask commands, thin like the routes: parse, call an operation, print."""
from app.cli.backup import backup_cli
from app.cli.store import maintainers_cli, platform_cli, seed_demo_command, users_cli


def register(app):
    for command in (maintainers_cli, platform_cli, users_cli, seed_demo_command, backup_cli):
        app.cli.add_command(command)
