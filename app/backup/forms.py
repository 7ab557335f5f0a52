"""The wizard's forms. CSRF is checked by the access gate before any form is read, so these forms
do not check it again (HTMX sends the token in a header, not a field)."""
from flask_wtf import FlaskForm
from wtforms import BooleanField, RadioField, SelectChoice, StringField
from wtforms.validators import InputRequired, Length, Optional

from app.snapshot.container import PARTS

PART_LABELS = {"database": "Database", "files": "Files", "both": "Both"}
RESTORE_LABELS = {"both": "Database and files", "database": "Database only", "files": "Files only"}


class _GateCheckedForm(FlaskForm):
    class Meta:
        csrf = False


class BackupForm(_GateCheckedForm):
    parts = RadioField("Backup type", choices=[SelectChoice(p, PART_LABELS[p]) for p in PARTS], default="both",
                       validators=[InputRequired("Choose what to back up: Database, Files or Both.")])


class RestoreForm(_GateCheckedForm):
    """The final confirmation; the parts offered are those the reviewed archive holds."""

    parts = RadioField("Restore", choices=[SelectChoice(p, RESTORE_LABELS[p]) for p in PARTS],
                       validators=[InputRequired("Choose what to restore from the parts this archive contains.")])
    safety = BooleanField("Take a safety backup of the current store first", default=True)
    other_store = BooleanField("This archive is from another store; restore it here anyway")
    # Required (no default) when the review found privileges that would rise or return.
    accounts = RadioField("Users and roles", choices=[
        SelectChoice("archive", "Restore the archive's users, roles and passwords"),
        SelectChoice("keep", "Keep today's users and roles (restore everything else)"),
    ], validators=[Optional()])
    store_name = StringField("Store name", validators=[Length(max=200)])

    def offer_parts(self, archive_parts):
        """Only the parts the archive holds: all three when it holds both, else just its one."""
        self.parts.choices = [SelectChoice(p, RESTORE_LABELS[p]) for p in PARTS if archive_parts == "both" or p == archive_parts]
