"""archive trials: dry runs, verifications and drills in scratch stores

Revision ID: 7b4f2c8e1a6d
Revises: 5d1e7a3c9b20
Create Date: 2026-11-26 01:15:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '7b4f2c8e1a6d'
down_revision = '5d1e7a3c9b20'
branch_labels = None
depends_on = None

# Platform tables only (see app/schema.py): older backups keep restoring without being brought forward.
STORE_SCHEMA_CHANGED = False


def upgrade(engine_name):
    globals()["upgrade_%s" % engine_name]()


def downgrade(engine_name):
    globals()["downgrade_%s" % engine_name]()


def upgrade_():
    pass


def downgrade_():
    pass


def upgrade_platform():
    op.create_table('archive_trials',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('archive_name', sa.String(length=255), nullable=False),
    sa.Column('archive_sha256', sa.String(length=64), nullable=True),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('ok', sa.Boolean(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('table_name', sa.String(length=255), nullable=True),
    sa.Column('row_label', sa.String(length=500), nullable=True),
    sa.Column('seconds', sa.Float(), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=True),
    sa.Column('started_by', sa.String(length=255), nullable=False),
    sa.Column('checked_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_archive_trials'))
    )
    with op.batch_alter_table('archive_trials', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_archive_trials_archive_name'), ['archive_name'], unique=False)
        batch_op.create_index(batch_op.f('ix_archive_trials_archive_sha256'), ['archive_sha256'], unique=False)
        batch_op.create_index(batch_op.f('ix_archive_trials_checked_at'), ['checked_at'], unique=False)


def downgrade_platform():
    with op.batch_alter_table('archive_trials', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_archive_trials_checked_at'))
        batch_op.drop_index(batch_op.f('ix_archive_trials_archive_sha256'))
        batch_op.drop_index(batch_op.f('ix_archive_trials_archive_name'))
    op.drop_table('archive_trials')
