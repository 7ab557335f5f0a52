"""Forms: Flask-WTF gives each one its CSRF token field, csrf_token."""
from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, Length


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=255)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=200)])


class MaintainerNetworkForm(FlaskForm):
    cidr = StringField("Network (CIDR)", validators=[DataRequired(), Length(max=64)])
    label = StringField("Label", validators=[DataRequired(), Length(max=200)])
    confirm_lockout = BooleanField("I understand this locks me out of this page")


class ConfirmForm(FlaskForm):
    """A bare form for POST-only buttons (logout, remove): just the CSRF token."""

    confirm_lockout = BooleanField("I understand this locks me out of this page")
