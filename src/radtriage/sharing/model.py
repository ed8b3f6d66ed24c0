"""What a clinician asks for when issuing a share, its bounds, and why a holder may be refused."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from radtriage.ingest.parse import valid_uid

SHARERS = ("clinician", "radiologist", "admin")  # who may issue, list and revoke shares
MIN_HOURS, MAX_HOURS = 1, 30 * 24  # an hour to thirty days
MAX_OPENS = 20
MAX_TRIES = 5  # wrong passcodes (or hospital tokens) before the share locks
SESSION_MINUTES = 30  # how long an opened share stays readable in the holder's browser
RECIPIENT = r"^[A-Za-z0-9][A-Za-z0-9 .()&'-]{0,63}$"  # a hospital's name, never a person's


class ShareRequest(BaseModel):
    """The body of ``POST /api/v1/studies/{uid}/shares``."""

    model_config = ConfigDict(extra="forbid")

    consent: Literal["patient", "guardian", "representative"] = Field(
        description="who gave consent to the share (recorded; required)")
    legal_basis: str = Field(min_length=3, max_length=128,
                             description="the legal basis, e.g. 'PDPO DPP3: consent for cross-boundary care'")
    audience: Literal["anyone", "hospital"] = Field(
        description="anyone with the link and passcode, or only the named hospital (with its token)")
    recipient: str | None = Field(default=None, pattern=RECIPIENT,
                                  description="the receiving hospital (required for audience 'hospital')")
    scope: Literal["study", "key_images"] = "study"
    key_images: list[str] = Field(default_factory=list, max_length=200,
                                  description="SOP Instance UIDs shared with the report (scope 'key_images')")
    expires_in_hours: int = Field(ge=MIN_HOURS, le=MAX_HOURS)
    max_opens: int = Field(default=3, ge=1, le=MAX_OPENS)
    passcode: str | None = Field(default=None, min_length=6, max_length=64,
                                 description="chosen passcode; omitted: eight digits are generated")

    @model_validator(mode="after")
    def _consistent(self) -> ShareRequest:
        if self.audience == "hospital" and not self.recipient:
            raise ValueError("audience 'hospital' needs the receiving hospital in 'recipient'")
        if self.scope == "key_images" and not self.key_images:
            raise ValueError("scope 'key_images' needs the SOP Instance UIDs in 'key_images'")
        if self.scope == "study" and self.key_images:
            raise ValueError("'key_images' are only for scope 'key_images'")
        for uid in self.key_images:
            if not valid_uid(uid):
                raise ValueError(f"key_images: {uid!r} is not a UID")
        return self


class Refusal(Enum):
    """Why a holder is not let in: (HTTP status, English, Traditional Chinese)."""

    UNKNOWN = (404, "This share does not exist.", "此分享不存在。")
    EXPIRED = (410, "This share has expired.", "此分享已過期。")
    REVOKED = (410, "This share was revoked by the clinician who issued it.", "簽發此分享的醫生已撤銷分享。")
    USED_UP = (410, "This share has been opened as many times as allowed.", "此分享的開啟次數已達上限。")
    LOCKED = (423, "This share is locked after too many wrong passcodes. Ask the issuing hospital for a new one.",
              "密碼錯誤次數過多，此分享已被鎖定。請向簽發醫院索取新的分享。")
    WRONG_PASSCODE = (403, "Wrong passcode.", "密碼錯誤。")
    WRONG_HOSPITAL = (403, "This share is only for the named receiving hospital: its token is missing or wrong.",
                      "此分享只供指定的接收醫院使用：醫院憑證缺失或錯誤。")
    BAD_LINK = (403, "The link is incomplete or damaged: scan the QR code again.", "連結不完整或已損壞：請重新掃描二維碼。")
    NO_SESSION = (403, "This page needs the share to be opened again with its link and passcode.",
                  "請以連結及密碼重新開啟此分享。")

    @property
    def status(self) -> int:
        return self.value[0]

    def words(self, lang: str) -> str:
        return self.value[2] if lang == "zh-Hant" else self.value[1]


class ShareRefused(Exception):
    def __init__(self, refusal: Refusal, tries_left: int | None = None) -> None:
        super().__init__(refusal.name)
        self.refusal = refusal
        self.tries_left = tries_left


@dataclass(frozen=True)
class Issued:
    """What the issuer gets back once: the link (with its key), the passcode, the hospital's token."""

    share_id: int
    link: str
    passcode: str
    recipient_token: str | None
