"""Forms: Flask-WTF gives each one its CSRF token field, csrf_token."""
from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, IntegerField, PasswordField, StringField
from wtforms.validators import DataRequired, Length, NumberRange, Optional


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=255)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=200)])


class MaintainerNetworkForm(FlaskForm):
    cidr = StringField("Network (CIDR)", validators=[DataRequired(), Length(max=64)])
    label = StringField("Label", validators=[DataRequired(), Length(max=200)])
    confirm_lockout = BooleanField("I understand this locks me out of this page")
    # A wide network is added only when this carries that very network (the checkbox's value),
    # so ticking the box for one network never confirms another typed in afterwards.
    confirm_wide = StringField("I understand this lets every address in the network run backups and restores",
                               validators=[Optional(), Length(max=64)])


class ConfirmForm(FlaskForm):
    """A bare form for POST-only buttons (logout, remove): just the CSRF token."""

    confirm_lockout = BooleanField("I understand this locks me out of this page")


class DestinationForm(FlaskForm):
    """An off-site destination (platform operators only); app.operations.offsite checks the combination.
    The secret key is write-only: it is never filled back into the form or shown."""

    name = StringField("Name", validators=[DataRequired(), Length(max=64)])
    endpoint_url = StringField("Endpoint", validators=[Optional(), Length(max=500)])
    bucket = StringField("Bucket", validators=[DataRequired(), Length(max=255)])
    prefix = StringField("Prefix", validators=[Optional(), Length(max=400)])
    region = StringField("Region", default="us-east-1", validators=[Optional(), Length(max=64)])
    credentials_env = StringField("Credentials from the environment (prefix)", validators=[Optional(), Length(max=64)])
    access_key_id = StringField("or access key id", validators=[Optional(), Length(max=255)])
    secret_access_key = PasswordField("and secret access key", validators=[Optional(), Length(max=255)])
    checksums = BooleanField("Send S3 checksums (turn off for providers that reject them)", default=True)
    age_recipient = StringField("Encrypt to age public key (optional)", validators=[Optional(), Length(max=100)])
    object_lock_days = IntegerField("Object lock, days (0: off)", default=0, validators=[NumberRange(0, 3650)])
