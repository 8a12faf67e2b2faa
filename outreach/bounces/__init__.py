"""Bounces and complaints: what comes back after a message was accepted, read and acted on.

    reports.py   what a returned message says (RFC 3464 DSN, RFC 5965 ARF, flufl.bounce
                 for the rest; auto-replies recognized and ignored)
    apply.py     which delivery it answers (VERP, Message-ID, address) and the rules
                 (suppress, unsubscribe), recorded once per event
    breaker.py   a run whose hard-bounce or complaint rate passes the threshold pauses itself
    receiver.py  `outreach bounces serve`: an SMTP server for the bounce domain's MX
    providers.py the webhook events of Amazon SES (SNS), Postmark, SendGrid and Mailgun
"""
