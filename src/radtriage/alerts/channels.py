"""The channels an alert goes out on: a signed webhook, e-mail over SMTP, and Apprise URLs.

Each sender's ``send(member, outgoing)`` returns on success and raises
`radtriage.outbox.SendError` otherwise; ``permanent`` says that trying again cannot
help (a refused recipient, a 4xx from the webhook), so the outbox stops retrying.
Secrets (webhook key, SMTP password, Apprise URLs with tokens) are read from
the environment once, when the senders are built.
"""

from __future__ import annotations

import json
import smtplib
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import httpx

from radtriage.alerts.config import ENV_PREFIX, AlertingConfig, EmailChannel, Member
from radtriage.alerts.message import Outgoing
from radtriage.alerts.signing import webhook_headers
from radtriage.outbox import SendError

RETRYABLE_STATUS = frozenset({408, 425, 429})


class WebhookSender:
    """POST the alert as JSON, signed over timestamp + body, with the delivery's idempotency key."""

    def __init__(self, secret: bytes, timeout_s: float) -> None:
        self.secret = secret
        self.client = httpx.Client(timeout=timeout_s, follow_redirects=False)

    def send(self, member: Member, out: Outgoing) -> None:
        url = member.contacts.webhook
        if not url:
            raise SendError("member has no webhook", permanent=True)
        body = json.dumps(out.payload, separators=(",", ":")).encode()
        try:
            r = self.client.post(url, content=body, headers=webhook_headers(self.secret, body, out.key, out.event))
        except httpx.HTTPError as exc:
            raise SendError(f"webhook: {type(exc).__name__}: {exc}") from exc
        if r.status_code >= 300:
            permanent = 400 <= r.status_code < 500 and r.status_code not in RETRYABLE_STATUS
            raise SendError(f"webhook: HTTP {r.status_code}", permanent=permanent)

    def close(self) -> None:
        self.client.close()


class EmailSender:
    """One message per recipient over SMTP (STARTTLS or TLS as configured), the key image attached."""

    def __init__(self, cfg: EmailChannel, password: str | None) -> None:
        self.cfg, self.password = cfg, password

    def message(self, member: Member, out: Outgoing) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.cfg.sender
        msg["To"] = member.contacts.email
        msg["Subject"] = out.subject
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = make_msgid(idstring=out.key, domain="radtriage")
        msg["X-Radtriage-Idempotency-Key"] = out.key
        msg.set_content(out.text)
        if self.cfg.attach_key_image and out.key_image is not None and out.key_image.is_file():
            msg.add_attachment(out.key_image.read_bytes(), maintype="image", subtype="png", filename="key-image.png")
        return msg

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cfg.ca_file) if self.cfg.ca_file else None)

    def send(self, member: Member, out: Outgoing) -> None:
        if not member.contacts.email:
            raise SendError("member has no e-mail address", permanent=True)
        cfg = self.cfg
        try:
            if cfg.security == "ssl":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout_s, context=self._context())
            else:
                smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s)
            with smtp:
                if cfg.security == "starttls":
                    smtp.starttls(context=self._context())
                if cfg.username:
                    smtp.login(cfg.username, self.password or "")
                smtp.send_message(self.message(member, out))
        except smtplib.SMTPRecipientsRefused as exc:
            raise SendError("email: recipient refused", permanent=True) from exc
        except smtplib.SMTPResponseException as exc:
            raise SendError(f"email: SMTP {exc.smtp_code}", permanent=exc.smtp_code >= 500) from exc
        except (OSError, smtplib.SMTPException) as exc:  # refused, timed out, TLS failure, dropped
            raise SendError(f"email: {type(exc).__name__}: {exc}") from exc


class AppriseSender:
    """Any Apprise URL (Teams, Slack, Telegram, ntfy, SMS gateways); nothing written to disk."""

    def __init__(self, timeout_s: float, environ: Mapping[str, str]) -> None:
        import apprise

        self.apprise = apprise
        self.asset = apprise.AppriseAsset(storage_mode="memory", service_timeout=timeout_s)
        self.environ = environ

    def send(self, member: Member, out: Outgoing) -> None:
        urls = [self.environ.get(u[len(ENV_PREFIX):], "") if u.startswith(ENV_PREFIX) else u
                for u in member.contacts.apprise]
        ap = self.apprise.Apprise(asset=self.asset)
        for url in urls:
            if not ap.add(url):
                raise SendError("apprise: an URL is not understood", permanent=True)
        attach = str(out.key_image) if out.key_image is not None and out.key_image.is_file() else None
        if not ap.notify(body=out.text, title=out.subject, attach=attach):
            raise SendError("apprise: not delivered")


class Channels:
    """The configured senders by channel name."""

    def __init__(self, config: AlertingConfig, environ: Mapping[str, str]) -> None:
        self.config = config
        self.senders: dict[str, WebhookSender | EmailSender | AppriseSender] = {}
        ch = config.channels
        secret = environ.get(ch.webhook.secret_env)
        if secret:
            self.senders["webhook"] = WebhookSender(secret.encode(), ch.webhook.timeout_s)
        if ch.email is not None:
            self.senders["email"] = EmailSender(ch.email, environ.get(ch.email.password_env or "") or None)
        self.senders["apprise"] = AppriseSender(ch.apprise.timeout_s, environ)

    def send(self, channel: str, member_id: str, out: Outgoing) -> None:
        member = self.config.member(member_id)
        if member is None:
            raise SendError(f"member {member_id!r} is no longer configured", permanent=True)
        sender = self.senders.get(channel)
        if sender is None:
            raise SendError(f"channel {channel} is not configured", permanent=True)
        sender.send(member, out)

    def close(self) -> None:
        sender = self.senders.get("webhook")
        if isinstance(sender, WebhookSender):
            sender.close()
