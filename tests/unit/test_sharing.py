"""The share's parts on their own: sealing with AES-256-GCM (another key, another file name or a changed byte
fails), the link's key text, the passcode hash, the shared-copy mark in the header, the issue request's rules,
window presets on a real CT, the QR code."""

from __future__ import annotations

import datetime as dt
import io

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydantic import ValidationError
from pydicom.data import get_testdata_file

from radtriage.sharing.copy import MARK, mark_shared_copy, shared_copy_bytes
from radtriage.sharing.crypto import (WrongKey, hash_passcode, key_from_text, key_text, new_key, new_passcode,
                                      passcode_ok, seal, unseal)
from radtriage.sharing.model import MAX_HOURS, ShareRequest
from radtriage.sharing.qr import qr_code
from radtriage.sharing.render import frame_png

NOW = dt.datetime(2026, 12, 8, 9, 30, tzinfo=dt.UTC)
CT = get_testdata_file("CT_small.dcm")


def test_a_sealed_file_opens_only_with_its_key_and_name() -> None:
    key, data = new_key(), b"DICM" + b"\x00" * 100 + b"Doe^Jane"
    sealed = seal(key, "i00001", data)
    assert b"DICM" not in sealed and b"Doe^Jane" not in sealed and len(key) == 32
    assert unseal(key, "i00001", sealed) == data
    with pytest.raises(WrongKey):
        unseal(new_key(), "i00001", sealed)
    with pytest.raises(WrongKey):
        unseal(key, "i00002", sealed)  # a file swapped for another of the same share
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    with pytest.raises(WrongKey):
        unseal(key, "i00001", bytes(tampered))
    assert seal(key, "i00001", data) != sealed  # a fresh nonce each time


def test_the_key_text_round_trips_and_a_malformed_one_is_refused() -> None:
    key = new_key()
    text = key_text(key)
    assert len(text) == 43 and "=" not in text and key_from_text(text) == key
    for bad in ("", "abc", text[:-2], "!" * 43):
        with pytest.raises(WrongKey):
            key_from_text(bad)


def test_the_passcode_is_hashed_and_checked() -> None:
    code = new_passcode()
    assert len(code) == 8 and code.isdigit()
    stored = hash_passcode(code)
    assert stored.startswith("$argon2id$") and code not in stored
    assert passcode_ok(stored, code) and not passcode_ok(stored, "00000000" if code != "00000000" else "1")


def test_each_instance_is_marked_as_a_shared_copy_and_keeps_its_uids(tmp_path) -> None:
    original = pydicom.dcmread(CT)
    ds, data = shared_copy_bytes(CT, NOW, "RADTRIAGE")
    copy = pydicom.dcmread(io.BytesIO(data))
    assert str(copy.ImageComments).startswith(f"{MARK} - patient-carried share issued 2026-12-08 by RADTRIAGE")
    for uid in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        assert copy[uid].value == original[uid].value
    item = copy.OriginalAttributesSequence[-1]
    assert item.ReasonForTheAttributeModification == "COERCE" and item.ModifyingSystem == "RADTRIAGE"
    assert item.AttributeModificationDateTime == "20261208093000"
    assert item.ModifiedAttributesSequence[0].ImageComments == original.ImageComments == "Uncompressed"
    assert str(copy.ImageComments).endswith("; not the original. Uncompressed")  # the original comment kept
    assert np.array_equal(copy.pixel_array, original.pixel_array)  # pixels untouched
    assert "PixelData" not in ds  # the header kept for the manifest, without pixels
    again = mark_shared_copy(copy, NOW, "RADTRIAGE")  # a copy of a copy keeps both records
    assert len(again.OriginalAttributesSequence) == 2 and str(again.ImageComments).count(MARK) == 2
    blank = pydicom.dcmread(CT)
    del blank.ImageComments
    mark_shared_copy(blank, NOW, "RADTRIAGE")  # no comment before: the record holds it empty
    previous = blank.OriginalAttributesSequence[-1].ModifiedAttributesSequence[0]
    assert "ImageComments" in previous and not previous.ImageComments
    sr = pydicom.Dataset()
    mark_shared_copy(sr, NOW, "RADTRIAGE")  # no pixels: no Image Comments, the record only
    assert "ImageComments" not in sr and sr.OriginalAttributesSequence[0].ModifiedAttributesSequence == []


def _request(**kw) -> ShareRequest:
    body = {"consent": "patient", "legal_basis": "consent", "audience": "anyone", "expires_in_hours": 24, **kw}
    return ShareRequest.model_validate(body)


def test_the_issue_request_rules() -> None:
    assert _request().max_opens == 3 and _request().scope == "study"
    assert _request(audience="hospital", recipient="Queen Mary Hospital").recipient == "Queen Mary Hospital"
    for bad in ({"audience": "hospital"}, {"recipient": "x" * 65}, {"scope": "key_images"},
                {"key_images": ["1.2.3"]}, {"scope": "key_images", "key_images": ["1..2"]},
                {"expires_in_hours": 0}, {"expires_in_hours": MAX_HOURS + 1}, {"max_opens": 21},
                {"passcode": "12345"}, {"consent": "nobody"}, {"legal_basis": ""}, {"extra": 1}):
        with pytest.raises(ValidationError):
            _request(**bad)


def test_window_presets_render_a_real_ct_frame() -> None:
    data = open(CT, "rb").read()
    brain = Image.open(io.BytesIO(frame_png(data, 0, "brain", None)))
    bone = Image.open(io.BytesIO(frame_png(data, 0, "bone", None)))
    auto = Image.open(io.BytesIO(frame_png(data, 0, "auto", [40.0, 400.0])))
    assert brain.size == (128, 128) and brain.mode == "L"
    b, o = np.asarray(brain, dtype=float), np.asarray(bone, dtype=float)
    assert (b == 255).mean() > (o == 255).mean()  # a narrow window saturates more
    assert np.array_equal(np.asarray(auto), np.asarray(Image.open(io.BytesIO(frame_png(data, 0, "soft", None)))))


def test_a_large_radiograph_is_reduced_for_the_phone_and_monochrome1_inverted() -> None:
    path = get_testdata_file("RG1_UNCR.dcm")  # CR, 1955 x 1841, MONOCHROME1
    img = Image.open(io.BytesIO(frame_png(open(path, "rb").read(), 0, "auto", [15000.0, 30000.0])))
    assert max(img.size) == 1024 and img.size[0] == round(1841 * 1024 / 1955)
    ds = pydicom.dcmread(path)
    raw = ds.pixel_array.astype(float)
    shown = np.asarray(img, dtype=float)
    small = np.asarray(Image.fromarray(raw.astype(np.float32)).resize(img.size), dtype=float)
    assert np.corrcoef(shown.ravel(), small.ravel())[0, 1] < -0.5  # inverted: high stored values shown dark


def test_the_qr_code_is_an_image_of_the_link() -> None:
    link = "https://radtriage.example.org/s/AbCdEfGhIjKlMnOpQrStUv#" + "k" * 43
    png = Image.open(io.BytesIO(qr_code(link, "png")))
    assert png.size[0] == png.size[1] and png.size[0] >= (37 + 8) * 8
    assert qr_code(link, "svg").startswith(b"<?xml")
    with pytest.raises(ValueError):
        qr_code(link, "gif")
