"""Email over SMTP: the channel (channel.py), its connection (connection.py), pipelining
(pipeline.py), what replies mean (replies.py) and the MIME bytes (mime.py)."""
from .channel import SmtpChannel
from .connection import BuiltEmail
from .replies import classify_reply

__all__ = ["BuiltEmail", "SmtpChannel", "classify_reply"]
