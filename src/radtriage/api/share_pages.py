"""The pages a share's holder sees (``/s/{id}``): the passcode form, the report and a simple image viewer on a
phone, the download as a DICOM zip, and a clear refusal page with its status. No login: the link (its id in the
path, its key after ``#``) and the passcode are the credentials (`radtriage.sharing.access`).

The key never reaches the server in a URL: the form's script copies it from the fragment into the POST body;
the answer sets a cookie (``<session>.<key>``, HttpOnly, SameSite=Strict, Secure over HTTPS, path ``/s/{id}``)
that the viewer's frame and download requests carry until the session ends.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from radtriage.api.auth import client_of
from radtriage.api.deps import services_of
from radtriage.api.pages import _page
from radtriage.db import audit
from radtriage.db.clock import utcnow
from radtriage.imaging.volume import VolumeError
from radtriage.sharing import access
from radtriage.sharing.dicomdir import study_zip
from radtriage.sharing.model import SESSION_MINUTES, Refusal, ShareRefused
from radtriage.sharing.render import PRESETS, NotAnImage, frame_png
from radtriage.sharing.store import shares_root
from radtriage.sharing.words import LANGS, WORDS, lang_of

router = APIRouter(prefix="/s", include_in_schema=False)
COOKIE = "rt_share"
ShareId = Annotated[str, Path(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Lang = Annotated[str | None, Query(max_length=8)]


def _root(request: Request):
    return shares_root(services_of(request).settings.data_dir)


def _refused(request: Request, exc: ShareRefused, lang: str, share_id: str, **extra: Any) -> Response:
    """The refusal page: the reason in words, with the status that says it."""
    words = WORDS[lang]
    form = exc.refusal in (Refusal.WRONG_PASSCODE, Refusal.WRONG_HOSPITAL)
    response = _page(request, "share.html", state="form" if form else "refused", w=words, lang=lang,
                     langs=LANGS, share_id=share_id, reason=exc.refusal.words(lang), code=exc.refusal.name.lower(),
                     tries_left=exc.tries_left if form else None, hospital=extra.get("hospital", False))
    response.status_code = exc.refusal.status
    return response


@router.get("/{share_id}")
def share_page(request: Request, share_id: ShareId, lang: Lang = None) -> Response:
    """The passcode form (the page's script takes the key from the link's fragment), or why it is refused."""
    lang = lang_of(lang)
    try:
        row = access.find(services_of(request).db, share_id, utcnow(), counting=True)
    except ShareRefused as exc:
        return _refused(request, exc, lang, share_id)
    return _page(request, "share.html", state="form", w=WORDS[lang], lang=lang, langs=LANGS, share_id=share_id,
                 reason=None, code=None, tries_left=None, hospital=row["audience"] == "hospital")


@router.post("/{share_id}/open")
async def open_share(request: Request, share_id: ShareId, key: Annotated[str, Form(max_length=64)] = "",
                     passcode: Annotated[str, Form(max_length=64)] = "",
                     hospital_token: Annotated[str, Form(max_length=128)] = "",
                     lang: Annotated[str, Form(max_length=8)] = "en") -> Response:
    """Check the passcode (and token) and the key, count one open, start the session, show the study."""
    lang = lang_of(lang)
    db, root, now = services_of(request).db, _root(request), utcnow()
    try:
        opened = await run_in_threadpool(access.open_in_browser, db, root, share_id, key, passcode,
                                         hospital_token or None, client_of(request), now)
    except ShareRefused as exc:
        return _refused(request, exc, lang, share_id, hospital=access.for_hospital(db, share_id))
    response = RedirectResponse(f"/s/{share_id}/view?lang={lang}", status_code=303)
    response.set_cookie(COOKIE, f"{opened.session}.{key}", path=f"/s/{share_id}", httponly=True,
                        samesite="strict", secure=request.url.scheme == "https",
                        max_age=SESSION_MINUTES * 60)
    return response


def _session(request: Request, share_id: str) -> access.Opened:
    return access.in_session(services_of(request).db, _root(request), share_id, request.cookies.get(COOKIE),
                             utcnow())


@router.get("/{share_id}/view")
def view_page(request: Request, share_id: ShareId, lang: Lang = None) -> Response:
    """The report and the viewer, from the decrypted manifest (audited: ``share_viewed``)."""
    lang = lang_of(lang)
    try:
        opened = _session(request, share_id)
    except ShareRefused as exc:
        return _refused(request, exc, lang, share_id)
    manifest = opened.sealed.manifest()
    audit.log(services_of(request).db, **access.entry(opened.row, "share_viewed", opened.actor, client_of(request)))
    report = manifest["report"]
    sections = [s for s in (report or {}).get("sections", []) if s[0] == lang] or (report or {}).get("sections", [])
    series = [{"label": f"{s['number']} {s['description']}".strip() or s["uid"], "modality": s["modality"],
               "images": [[i["file"], f] for i in s["instances"] if i["image"] for f in range(i["frames"])]}
              for s in manifest["series"]]
    return _page(request, "share.html", state="view", w=WORDS[lang], lang=lang, langs=LANGS, share_id=share_id,
                 manifest=manifest, report=report, sections=sections, series=[s for s in series if s["images"]],
                 presets=list(PRESETS), reason=None, code=None, tries_left=None, hospital=False)


@router.get("/{share_id}/frames/{file}/{frame}.png")
def frame(request: Request, share_id: ShareId, file: Annotated[str, Path(pattern=r"^i\d{5}$")],
          frame: Annotated[int, Path(ge=0, le=100000)], w: Annotated[str, Query(max_length=8)] = "auto"
          ) -> Response:
    """One frame as PNG in a window preset, rendered from the decrypted copy."""
    if w not in PRESETS:
        w = "auto"
    try:
        opened = _session(request, share_id)
        entry = next((i for s in opened.sealed.manifest()["series"] for i in s["instances"] if i["file"] == file),
                     None)
        if entry is None:
            return Response(status_code=404)
        png = frame_png(opened.sealed.read(file), frame, w, entry["window"])
    except ShareRefused as exc:
        return Response(exc.refusal.words("en"), status_code=exc.refusal.status, media_type="text/plain")
    except (NotAnImage, VolumeError) as exc:
        return Response(str(exc), status_code=404, media_type="text/plain")
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


@router.get("/{share_id}/download.zip")
def download(request: Request, share_id: ShareId, lang: Lang = None) -> Response:
    """The study as a zip of DICOM files with a DICOMDIR (audited: ``share_downloaded``)."""
    try:
        opened = _session(request, share_id)
    except ShareRefused as exc:
        return _refused(request, exc, lang_of(lang), share_id)
    manifest = opened.sealed.manifest()
    body = study_zip(opened.sealed, manifest, _root(request) / ".tmp")
    audit.log(services_of(request).db, **access.entry(opened.row, "share_downloaded", opened.actor,
                                                      client_of(request), bytes=len(body)))
    return Response(body, media_type="application/zip", headers={
        "Content-Disposition": 'attachment; filename="shared-study.zip"', "Cache-Control": "no-store"})

