"""Forms: Flask-WTF gives each one its CSRF token field, csrf_token."""
from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, Length, Optional


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
