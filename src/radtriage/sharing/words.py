"""The recipient page's words in English and Traditional Chinese (``?lang=zh-Hant``)."""

from __future__ import annotations

LANGS = ("en", "zh-Hant")

WORDS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Shared imaging study", "passcode": "Passcode", "hospital_token": "Receiving hospital's token",
        "open": "Open", "intro": "A hospital has shared this imaging study with the patient's consent. "
        "Enter the passcode you were given with this link.",
        "needs_js": "This page needs JavaScript to read the key from the link.",
        "not_recalled": "Revoking a share stops further opens; copies already downloaded cannot be recalled.",
        "tries_left": "Tries left before the share locks: {n}.", "report": "Report", "no_report": "No signed report "
        "is shared with these images.", "images": "Images", "series": "Series", "window": "Window",
        "auto": "Auto", "brain": "Brain", "soft": "Soft tissue", "lung": "Lung", "bone": "Bone", "zoom_in": "Zoom in",
        "zoom_out": "Zoom out", "previous": "Previous", "next": "Next", "download": "Download the study "
        "(DICOM, zip with DICOMDIR, for PACS import)", "patient": "Patient", "study": "Study",
        "expires": "Available until", "shared_copy": "These are shared copies, marked SHARED COPY in each image "
        "header. Not for primary diagnosis without the issuing hospital's original.", "refused": "Not available",
        "signed_by": "Signed by", "image": "Image", "language": "中文",
        "open_again": "Open the share again (passcode)",
    },
    "zh-Hant": {
        "title": "共享影像檢查", "passcode": "密碼", "hospital_token": "接收醫院憑證", "open": "開啟",
        "intro": "醫院已在病人同意下共享此影像檢查。請輸入與此連結一併提供的密碼。",
        "needs_js": "此頁需要 JavaScript 以讀取連結中的密鑰。",
        "not_recalled": "撤銷分享可阻止日後開啟；已下載的副本無法收回。",
        "tries_left": "分享被鎖定前尚餘嘗試次數：{n}。", "report": "報告", "no_report": "此分享沒有已簽署的報告。",
        "images": "影像", "series": "序列", "window": "窗位", "auto": "自動", "brain": "腦", "soft": "軟組織",
        "lung": "肺", "bone": "骨", "zoom_in": "放大", "zoom_out": "縮小", "previous": "上一張", "next": "下一張",
        "download": "下載檢查（DICOM，連 DICOMDIR 的 zip，供 PACS 匯入）", "patient": "病人", "study": "檢查",
        "expires": "有效期至", "shared_copy": "此為共享副本，每張影像的標頭均標明 SHARED COPY。"
        "未取得簽發醫院的原始影像前，不應作主要診斷之用。", "refused": "無法提供", "signed_by": "簽署",
        "image": "影像", "language": "English", "open_again": "重新開啟分享（輸入密碼）",
    },
}


def lang_of(value: str | None) -> str:
    return value if value in LANGS else "en"
