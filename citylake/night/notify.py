"""Tell people when a night goes wrong: always a log line, plus a webhook and/or an e-mail.

Configured in :class:`~citylake.core.settings.Settings` (environment, never code):
``CITYLAKE_NOTIFY_WEBHOOK_URL`` (JSON POST), ``CITYLAKE_NOTIFY_SMTP_HOST``,
``CITYLAKE_NOTIFY_SMTP_PORT`` (25), ``CITYLAKE_NOTIFY_EMAIL_TO`` (comma list),
``CITYLAKE_NOTIFY_EMAIL_FROM``. A notification that cannot be delivered is logged, never fatal.
"""

from __future__ import annotations

import json
import logging
import smtplib
import urllib.request
from email.message import EmailMessage

from citylake.core.settings import Settings

log = logging.getLogger("citylake.notify")


def notify(settings: Settings, subject: str, event: dict) -> list[str]:
    """Send ``event`` on every configured channel; return the channels that accepted it."""
    log.warning("%s: %s", subject, json.dumps(event, default=str, ensure_ascii=False)[:2000])
    sent = ["log"]
    url = settings.notify_webhook_url
    if url:
        body = json.dumps({"subject": subject, **event}, default=str).encode()
        req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                if 200 <= resp.status < 300:
                    sent.append("webhook")
        except OSError as exc:
            log.error("webhook %s not reached: %s", url, exc)
    host, to = settings.notify_smtp_host, settings.notify_email_to
    if host and to:
        msg = EmailMessage()
        msg["Subject"] = f"[citylake] {subject}"
        msg["From"] = settings.notify_email_from
        msg["To"] = to
        msg.set_content(json.dumps(event, indent=2, default=str, ensure_ascii=False))
        try:
            with smtplib.SMTP(host, settings.notify_smtp_port, timeout=10) as smtp:
                smtp.send_message(msg)
            sent.append("email")
        except (OSError, smtplib.SMTPException) as exc:
            log.error("mail server %s not reached: %s", host, exc)
    return sent
