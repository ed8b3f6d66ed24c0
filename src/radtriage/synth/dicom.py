"""Writing synthetic studies as real DICOM, with the headers a scanner writes.

Every synthetic file says what it is: the patient name starts ``SYNTHETIC^``,
the patient ID ``SYN``, and Image Comments reads
"SYNTHETIC - radtriage synth <version>; not patient data". Generators build
pixel arrays and call `write_ct_series` / `write_radiograph`; identities,
scanners and protocol names vary with the seed so that no model can find a
lesion by a generator artefact.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from radtriage import __version__

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
DX_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image - For Presentation
SYNTHETIC_COMMENT = f"SYNTHETIC - radtriage synth {__version__}; not patient data"
IMPLEMENTATION_CLASS_UID = "2.25.205719281723049384129577604396728405217"

CT_SCANNERS = (
    ("SIEMENS", "SOMATOM Definition AS+"),
    ("SIEMENS", "SOMATOM go.Top"),
    ("GE MEDICAL SYSTEMS", "Revolution CT"),
    ("GE MEDICAL SYSTEMS", "Optima CT660"),
    ("Philips", "Ingenuity CT"),
    ("Canon Medical Systems", "Aquilion ONE"),
)
XR_SCANNERS = (
    ("FUJIFILM Corporation", "FCR PROFECT CS", "CR"),
    ("Carestream Health", "DRX-Evolution", "DX"),
    ("Philips", "DigitalDiagnost", "DX"),
    ("AGFA", "CR 30-X", "CR"),
)
SITES = ("Queen Mary Hospital", "Prince of Wales Hospital", "Queen Elizabeth Hospital", "Tuen Mun Hospital")


@dataclass(frozen=True)
class Patient:
    name: str
    patient_id: str
    birth_date: dt.date
    sex: str  # "M" | "F"

    def age_on(self, day: dt.date) -> str:
        """DICOM Age String (nnnY, or nnnM under two years)."""
        months = (day.year - self.birth_date.year) * 12 + (day.month - self.birth_date.month)
        if day.day < self.birth_date.day:
            months -= 1
        return f"{months:03d}M" if months < 24 else f"{months // 12:03d}Y"


@dataclass(frozen=True)
class StudyIdentity:
    """The identifiers of one synthetic study, from its kind, seed and index alone.

    Two studies differ in every UID, accession number and patient ID unless
    all three are equal (a study made again keeps its identity). They never
    come from the random stream the images are drawn from, so two kinds made
    with one seed (which share that stream's start) cannot share them.
    """

    kind: str  # e.g. "ct-head"
    seed: int
    index: int

    def _entropy(self, what: str) -> str:
        # one string with separators: pydicom joins several sources with nothing between them
        return "|".join(("radtriage-synth", self.kind, str(self.seed), str(self.index), what))

    @property
    def study_uid(self) -> str:
        return generate_uid(entropy_srcs=[self._entropy("study")])

    def uid(self, n: int) -> str:
        """The study's ``n``-th other UID (series, instances, frames of reference, in the order asked)."""
        return generate_uid(entropy_srcs=[self._entropy(f"uid {n}")])

    @property
    def _code(self) -> str:
        """CTH for ct-head, CTAH cta-head, CTC ct-chest, XRH xr-hand."""
        first, *rest = self.kind.upper().split("-")
        return first + "".join(r[:1] for r in rest)

    @property
    def _short(self) -> str:
        return f"{self._code}{self.seed}-{self.index}"  # CTH5-0: ct-head, seed 5, index 0

    @property
    def accession(self) -> str:
        """At most 16 characters (SH): the short form, or the kind's code and a hash where that is longer."""
        if len(self._short) <= 16:
            return self._short
        digest = hashlib.sha256(self._entropy("accession").encode()).hexdigest()
        return self._code + digest[: 16 - len(self._code)]

    @property
    def patient_id(self) -> str:
        return f"SYN-{self._short}"


@dataclass(frozen=True)
class Study:
    """One synthetic study: who, where, when, on what."""

    patient: Patient
    study_uid: str
    accession: str
    description: str
    date: dt.date
    time: dt.time
    manufacturer: str
    model: str
    institution: str
    station: str
    referring: str = "SYNTHETIC^REFERRER"
    identity: StudyIdentity | None = None  # None: identifiers drawn from the random stream (ad-hoc studies)
    uid_counter: Iterator[int] = field(default_factory=itertools.count, compare=False, repr=False)

    @property
    def datetime(self) -> dt.datetime:
        return dt.datetime.combine(self.date, self.time)

    def new_uid(self, rng: np.random.Generator) -> str:
        """The next UID of this study (a series, an instance, a frame of reference).

        One number is drawn from ``rng`` whatever the identity, so the images
        drawn after it are the same with or without one.
        """
        draw = int(rng.integers(0, 2**63))
        if self.identity is None:
            return generate_uid(entropy_srcs=[str(draw)])
        return self.identity.uid(next(self.uid_counter))


def make_study(
    rng: np.random.Generator,
    index: int,
    description: str,
    *,
    age_years: tuple[float, float] = (45, 90),
    sex: str | None = None,
    modality: str = "CT",
    birth_date: dt.date | None = None,
    study_date: dt.date | None = None,
    identity: StudyIdentity | None = None,
) -> Study:
    """A study with a synthetic patient, scanner and date drawn from ``rng``.

    With an ``identity`` its UIDs, accession number and patient ID are that
    identity's (unique per kind, seed and index); without, they are drawn
    from ``rng``. The same numbers are drawn from ``rng`` either way.
    """
    if study_date is None:
        study_date = dt.date(2026, 1, 1) + dt.timedelta(days=int(rng.integers(0, 300)))
    if sex is None:
        sex = "F" if rng.random() < 0.5 else "M"
    if birth_date is None:
        age_days = int(rng.uniform(*age_years) * 365.25)
        birth_date = study_date - dt.timedelta(days=age_days)
    if modality == "CT":
        manufacturer, model = CT_SCANNERS[int(rng.integers(len(CT_SCANNERS)))]
    else:
        manufacturer, model, modality = XR_SCANNERS[int(rng.integers(len(XR_SCANNERS)))]
    seconds = int(rng.integers(0, 86400))
    # drawn in this order whatever the identity: the images drawn later depend on it
    patient_id = f"SYN{int(rng.integers(10**7, 10**8))}"
    study_uid = generate_uid(entropy_srcs=[str(int(rng.integers(0, 2**63)))])
    accession = f"SYN{int(rng.integers(10**9, 10**10))}"
    institution = SITES[int(rng.integers(len(SITES)))]
    station = f"{modality}{int(rng.integers(1, 9))}"
    if identity is not None:
        patient_id, study_uid, accession = identity.patient_id, identity.study_uid, identity.accession
    return Study(
        patient=Patient(
            name=f"SYNTHETIC^CASE{index:05d}",
            patient_id=patient_id,
            birth_date=birth_date,
            sex=sex,
        ),
        study_uid=study_uid,
        accession=accession,
        description=description,
        date=study_date,
        time=dt.time(seconds // 3600, (seconds // 60) % 60, seconds % 60),
        manufacturer=manufacturer,
        model=model,
        institution=institution,
        station=station,
        identity=identity,
    )


def xr_modality_of(study: Study) -> str:
    """CR or DX, as the study's radiography system writes."""
    for manufacturer, model, modality in XR_SCANNERS:
        if (manufacturer, model) == (study.manufacturer, study.model):
            return modality
    return "DX"


@dataclass(frozen=True)
class CtSeries:
    """How one CT series was acquired and reconstructed."""

    number: int
    description: str  # e.g. "HEAD 5mm SOFT", "CTA 0.625mm"
    protocol: str
    body_part: str  # HEAD, CHEST
    kernel: str  # e.g. "H30s", "STANDARD", "BONE"
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "AXIAL")
    kvp: float = 120.0
    exposure_mas: float = 250.0
    ctdi_vol: float = 50.0
    window_center: float = 40.0
    window_width: float = 80.0
    contrast_agent: str | None = None
    gantry_tilt: float = 0.0
    extra: dict = field(default_factory=dict)


def _base(study: Study, sop_class: str, modality: str, series_uid: str, series_number: int,
          series_description: str) -> Dataset:
    p, date, time = study.patient, study.date.strftime("%Y%m%d"), study.time.strftime("%H%M%S")
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = time
    ds.update({
        "AccessionNumber": study.accession, "Modality": modality, "Manufacturer": study.manufacturer,
        "InstitutionName": study.institution, "ReferringPhysicianName": study.referring,
        "StationName": study.station, "StudyDescription": study.description, "SeriesDescription": series_description,
        "ManufacturerModelName": study.model, "PatientName": p.name, "PatientID": p.patient_id,
        "PatientBirthDate": p.birth_date.strftime("%Y%m%d"), "PatientSex": p.sex, "PatientAge": p.age_on(study.date),
        "PatientIdentityRemoved": "NO",  # synthetic: nothing to remove
        "DeviceSerialNumber": f"SYN{zlib.crc32(study.model.encode()) % 100000:05d}",
        "SoftwareVersions": f"radtriage-synth {__version__}", "StudyInstanceUID": study.study_uid,
        "SeriesInstanceUID": series_uid, "StudyID": study.accession[-6:], "SeriesNumber": series_number,
        "ImageComments": SYNTHETIC_COMMENT,
    })
    return ds


def _finish(ds: Dataset, path: Path) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    ds.file_meta = meta
    ds.save_as(path, enforce_file_format=True)
    return path


def write_ct_series(
    folder: Path,
    rng: np.random.Generator,
    study: Study,
    series: CtSeries,
    hu: np.ndarray,
    spacing: tuple[float, float, float],
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0),
    slice_thickness: float | None = None,
) -> list[Path]:
    """Write a volume (z, y, x) in HU as one axial CT series, one file a slice.

    ``spacing`` is (slice interval, row spacing, column spacing) in mm;
    ``origin`` the patient position (x, y, z) of the first voxel. Slices go
    from feet to head (z increasing). Stored as unsigned-free int16 with
    RescaleIntercept -1024 as most scanners do.
    """
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = study.new_uid(rng)
    dz, dy, dx = spacing
    frame_uid = study.new_uid(rng)
    stored = np.clip(np.rint(hu) + 1024, 0, 4095).astype(np.uint16)
    paths = []
    for k in range(hu.shape[0]):
        ds = _base(study, CT_IMAGE_STORAGE, "CT", series_uid, series.number, series.description)
        ds.SOPInstanceUID = study.new_uid(rng)
        ds.ImageType = list(series.image_type)
        ds.ProtocolName = series.protocol
        ds.BodyPartExamined = series.body_part
        ds.ConvolutionKernel = series.kernel
        ds.SliceThickness = round(slice_thickness or dz, 4)
        ds.KVP = series.kvp
        ds.Exposure = int(series.exposure_mas)
        ds.CTDIvol = round(series.ctdi_vol, 2)
        ds.GantryDetectorTilt = series.gantry_tilt
        ds.PatientPosition = "HFS"
        ds.SpacingBetweenSlices = round(dz, 4)
        if series.contrast_agent:
            ds.ContrastBolusAgent = series.contrast_agent
        ds.InstanceNumber = k + 1
        z = origin[2] + k * dz
        ds.ImagePositionPatient = [round(origin[0], 4), round(origin[1], 4), round(z, 4)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.FrameOfReferenceUID = frame_uid
        ds.PositionReferenceIndicator = ""
        ds.SliceLocation = round(z, 4)
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = int(hu.shape[1]), int(hu.shape[2])
        ds.PixelSpacing = [round(dy, 6), round(dx, 6)]
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
        ds.RescaleType = "HU"
        ds.WindowCenter = series.window_center
        ds.WindowWidth = series.window_width
        for key, value in series.extra.items():
            setattr(ds, key, value)
        ds.PixelData = stored[k].tobytes()
        paths.append(_finish(ds, folder / f"{series.number:03d}_{k + 1:04d}.dcm"))
    return paths


def write_radiograph(
    folder: Path,
    rng: np.random.Generator,
    study: Study,
    image: np.ndarray,
    pixel_spacing: float,
    *,
    series_number: int = 1,
    description: str = "HAND PA LEFT",
    body_part: str = "HAND",
    laterality: str = "L",
    view: str = "PA",
    monochrome1: bool | None = None,
    bits: int = 12,
    patient_orientation: tuple[str, str] = ("L", "H"),
    extra: dict | None = None,
) -> Path:
    """Write a projection radiograph (``image`` in [0, 1], 1 = most attenuating).

    CR systems often write MONOCHROME1 (white = low values); DX systems
    MONOCHROME2. ``monochrome1=None`` follows the modality.
    """
    folder.mkdir(parents=True, exist_ok=True)
    modality = xr_modality_of(study)
    mono1 = modality == "CR" if monochrome1 is None else monochrome1
    sop_class = CR_IMAGE_STORAGE if modality == "CR" else DX_IMAGE_STORAGE
    ds = _base(study, sop_class, modality, study.new_uid(rng), series_number, description)
    ds.SOPInstanceUID = study.new_uid(rng)
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.BodyPartExamined = body_part
    ds.ViewPosition = view
    ds.ImageLaterality = laterality
    ds.Laterality = laterality
    # rows run toward the thumb (patient left, left hand PA), columns from the
    # fingertips toward the wrist (headward in anatomical position)
    ds.PatientOrientation = list(patient_orientation)
    ds.KVP = 50
    ds.InstanceNumber = 1
    ds.SamplesPerPixel = 1
    maxval = 2**bits - 1
    pixels = np.clip(image, 0, 1) * maxval
    if mono1:
        pixels = maxval - pixels
    ds.PhotometricInterpretation = "MONOCHROME1" if mono1 else "MONOCHROME2"
    ds.Rows, ds.Columns = int(image.shape[0]), int(image.shape[1])
    spacing = [round(pixel_spacing, 6), round(pixel_spacing, 6)]
    if modality == "CR":
        ds.PixelSpacing = spacing
    else:
        ds.ImagerPixelSpacing = spacing
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.PixelIntensityRelationship = "LOG"
        ds.PixelIntensityRelationshipSign = 1
        ds.RescaleIntercept = 0
        ds.RescaleSlope = 1
        ds.RescaleType = "US"
    ds.BitsAllocated = 8 if bits <= 8 else 16  # an 8-bit picture export
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.WindowCenter = maxval // 2
    ds.WindowWidth = maxval
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    ds.PixelData = np.rint(pixels).astype(np.uint8 if bits <= 8 else np.uint16).tobytes()
    return _finish(ds, folder / f"{series_number:03d}_0001.dcm")
