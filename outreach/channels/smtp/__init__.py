"""Email over SMTP."""
from .channel import BuiltEmail, SmtpChannel, classify_reply

__all__ = ["BuiltEmail", "SmtpChannel", "classify_reply"]
