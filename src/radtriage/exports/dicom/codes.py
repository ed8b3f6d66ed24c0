"""The coded concepts the DICOM results use, in one place (docs/results-out.md lists them per finding).

Every concept comes from pydicom's `codes` (SNOMED CT ``SCT``, DICOM ``DCM``, ``UCUM`` units), except the
few RadLex concepts in `RADLEX` (scheme designator ``RADLEX``, written with their RadLex names) and the
Lung-RADS categories and bone age in `LOCAL`, a private scheme (``99RADTRIAGE``, PS3.16 8.2: a designator
starting with 99), which neither pydicom's tables nor a RadLex identifier we could verify cover. The tests check that
each code used is one of these.
"""

from __future__ import annotations

import highdicom as hd
from pydicom.sr.codedict import codes

RADLEX_SCHEME = "RADLEX"
LOCAL_SCHEME = "99RADTRIAGE"

# RadLex identifiers with their RadLex names (RadLex 4.x).
RADLEX = {
    "RID50149": "pulmonary nodule",
    "RID50134": "Lung-RADS assessment",
}

LUNG_RADS = ("0", "1", "2", "3", "4A", "4B", "4X")
LOCAL = {
    **{f"LR{c}": f"Lung-RADS {c}" for c in LUNG_RADS},
    "BONEAGE": "Bone age (Greulich-Pyle)",
    "BONEAGE-DIFF": "Bone age minus chronological age",
}


def local(code: str) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(code, LOCAL_SCHEME, LOCAL[code])


def radlex(rid: str) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(rid, RADLEX_SCHEME, RADLEX[rid])


def lung_rads_category(category: str) -> hd.sr.CodedConcept:
    """The value of a Lung-RADS assessment (``4B`` -> LR4B, "Lung-RADS 4B") in the private scheme."""
    return local(f"LR{category.upper()}")


PRESENT, ABSENT = codes.SCT.Present, codes.SCT.Absent
PROBABILITY = codes.DCM.Probability

# What each task's finding is (the measurement group's finding type) and where (its finding site).
ICH = codes.SCT.IntracranialHemorrhage
LVO = codes.SCT.Occlusion
NODULE = radlex("RID50149")
LUNG_RADS_ASSESSMENT = radlex("RID50134")

# ICH subtype -> (anatomic compartment, topographical modifier): the subtype as a finding site.
ICH_SITES = {
    "intraparenchymal": (codes.SCT.Brain, None),
    "intraventricular": (codes.SCT.BrainVentricle, None),
    "subarachnoid": (codes.SCT.SubarachnoidSpace, None),
    "subdural": (codes.SCT.DuraMater, codes.SCT.Internal),
    "epidural": (codes.SCT.DuraMater, codes.SCT.External),
}
# LVO segment (radtriage.inference.lvo.SEGMENTS) -> artery
LVO_SITES = {
    "ica_t": codes.SCT.InternalCarotidArtery,
    "m1": codes.SCT.MiddleCerebralArteryM1Segment,
    "m2": codes.SCT.MiddleCerebralArteryM2Segment,
}
SIDES = {"left": codes.SCT.Left, "right": codes.SCT.Right}

VOLUME = codes.SCT.Volume
DIAMETER = codes.SCT.Diameter
LONG_AXIS = codes.SCT.LongAxis  # a nodule's longest diameter is its long-axis length
MEAN = codes.SCT.Mean  # the mean diameter's derivation
CENTRE = codes.DCM.Center
HAND_BONES = codes.SCT.BoneStructureOfHand  # the finding site of a bone-age assessment
BONE_AGE = local("BONEAGE")
SUBJECT_AGE = codes.DCM.SubjectAge  # chronological age
AGE_DIFFERENCE = local("BONEAGE-DIFF")
Z_SCORE = codes.DCM.ZScore
COMMENT = codes.DCM.Comment

UNIT_ML = codes.UCUM.CubicCentimeter  # 1 cm3 = 1 mL
UNIT_MM = codes.UCUM.Millimeter
UNIT_MM3 = codes.UCUM.CubicMillimeter
UNIT_MONTH = codes.UCUM.Month
UNIT_NONE = codes.UCUM.NoUnits

PROCEDURES = {"CT": codes.LN.CTUnspecifiedBodyRegion}
PROCEDURE_XR = codes.LN.XRUnspecifiedBodyRegion
