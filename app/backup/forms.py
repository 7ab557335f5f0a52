"""The wizard's forms. CSRF is checked by the access gate before any form is read, so these forms
do not check it again (HTMX sends the token in a header, not a field)."""
from decimal import Decimal

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField, DecimalField, HiddenField, IntegerField, RadioField, SelectChoice, SelectField, SelectMultipleField, StringField,
    widgets,
)
from wtforms.validators import InputRequired, Length, NumberRange, Optional

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
    # Checked on the page unless the archive already passed a trial (the review sets it: ``suggest_try_first``).
    try_first = BooleanField("Try it first in a scratch store, and restore only if it passes")
    other_store = BooleanField("This archive is from another store; restore it here anyway")
    # Required (no default) when the review found privileges that would rise or return.
    accounts = RadioField("Users and roles", choices=[
        SelectChoice("archive", "Restore the archive's users, roles and passwords"),
        SelectChoice("keep", "Keep today's users and roles (restore everything else)"),
    ], validators=[Optional()])
    store_name = StringField("Store name", validators=[Length(max=200)])
    # The reviewed archive's SHA-256: the restore refuses any other file.
    archive_sha256 = HiddenField(validators=[Length(max=64)])

    def offer_parts(self, archive_parts):
        """Only the parts the archive holds: all three when it holds both, else just its one."""
        self.parts.choices = [SelectChoice(p, RESTORE_LABELS[p]) for p in PARTS if archive_parts == "both" or p == archive_parts]

    def suggest_try_first(self, verified_at):
        """A new review's default: try it first, unless the archive already passed a trial."""
        self.try_first.data = verified_at is None

    def keep_accounts(self):
        """Restore everything but the accounts (today's users and roles stay)?"""
        return self.parts.data != "files" and self.accounts.data == "keep"


FREQUENCIES = [SelectChoice("daily", "Every day"), SelectChoice("weekly", "Every week"),
               SelectChoice("hourly", "Every few hours")]
EVERY_HOURS = [SelectChoice(str(n), f"every {n} hours" if n > 1 else "every hour") for n in (1, 2, 3, 4, 6, 8, 12)]
WEEKDAYS = [SelectChoice(str(n), day) for n, day in enumerate(("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"))]


class CheckboxesField(SelectMultipleField):
    """Several choices as checkboxes (WTForms' documented recipe)."""

    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()


class ScheduleForm(_GateCheckedForm):
    """A new schedule; app.operations.schedules checks the combination and says what is wrong."""

    parts = RadioField("Back up", choices=[SelectChoice(p, PART_LABELS[p]) for p in PARTS], default="both",
                       validators=[InputRequired("Choose what to back up: Database, Files or Both.")])
    frequency = SelectField("How often", choices=FREQUENCIES, default="daily")
    every_hours = SelectField("Interval", choices=EVERY_HOURS, default="6")
    at_time = StringField("At (store time)", default="03:30", validators=[Optional(), Length(max=5)])
    weekdays = CheckboxesField("On", choices=WEEKDAYS, default=["6"], validators=[Optional()])

    def timing(self):
        """The fields the chosen frequency uses (the others stay on the form but are not meant)."""
        if self.frequency.data == "hourly":
            return {"every_hours": self.every_hours.data}
        if self.frequency.data == "weekly":
            return {"at_time": self.at_time.data, "weekdays": self.weekdays.data}
        return {"at_time": self.at_time.data}


class RetentionForm(_GateCheckedForm):
    """The retention policy; a preview of what it would delete comes before saving it."""

    keep_all_days = IntegerField("Keep every backup for (days)", validators=[InputRequired(), NumberRange(1, 365)])
    daily_days = IntegerField("then one a day for (days)", validators=[InputRequired(), NumberRange(0, 365)])
    weekly_weeks = IntegerField("then one a week for (weeks)", validators=[InputRequired(), NumberRange(0, 260)])
    monthly_months = IntegerField("then one a month for (months)", validators=[InputRequired(), NumberRange(0, 120)])
    yearly_years = IntegerField("then one a year for (years)", validators=[InputRequired(), NumberRange(0, 50)])
    max_gb = DecimalField("and at most (GB in all, 0 for no cap)", places=1,
                          validators=[InputRequired(), NumberRange(0, 100_000)])
    export_days = IntegerField("Keep exports for (days)", validators=[InputRequired(), NumberRange(1, 90)])

    def fill(self, policy):
        for field in ("keep_all_days", "daily_days", "weekly_weeks", "monthly_months", "yearly_years", "export_days"):
            getattr(self, field).data = getattr(policy, field)
        self.max_gb.data = Decimal(policy.max_bytes) / 10**9

    def values(self):
        """The fields as app.operations.retention.Policy's keyword arguments."""
        values = {field: getattr(self, field).data for field in
                  ("keep_all_days", "daily_days", "weekly_weeks", "monthly_months", "yearly_years", "export_days")}
        return {**values, "max_bytes": int(self.max_gb.data * 10**9)}
