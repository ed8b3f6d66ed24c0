"""Synthetic paediatric left-hand PA radiographs for bone-age assessment (``xr-hand``).

What it models
--------------
A projection radiograph of a child's left hand and wrist, PA, fingers up and
thumb on the image right (the usual display of a left hand PA). The picture is
a line integral of linear attenuation through analytic 3-D shapes:

* soft tissue: forearm, wrist, palm, thenar and hypothenar eminences and five
  fingers as tapered cylinders / ellipsoids (their union, smoothed);
* bones as elliptical-section tubes with a cortical shell over cancellous bone
  (so edges of a shaft look denser than its middle, as on a real film):
  distal radius (with radial inclination) and ulna (with styloid), five
  metacarpals, proximal phalanges, middle phalanges (not the thumb), distal
  phalanges (with tufts); eight carpal bones as ellipsoids (with the hook of
  the hamate end-on as a ring once mature); the thumb's adductor sesamoid.
* every tubular bone has an epiphysis at its growing end (radius and ulna
  distal; metacarpals 2-5 distal; metacarpal 1 and all phalanges proximal).
  An epiphysis is cartilage (soft-tissue density, not drawn) until its
  ossification centre appears, then a small nucleus that widens to the width
  of the metaphysis and caps it; the physis (growth plate) is a lucent gap
  that narrows, fuses and leaves a faint physeal scar.

Maturity follows BONE age; size follows chronological age (nudged toward the
bone age, as taller children tend to be advanced); the DICOM header carries
chronological age (birth and study dates). Bone age = chronological age +
z * SD(age), z ~ N(0, 1) with ~5% drawn as clearly advanced or delayed
(2 <= |z| <= 3.5).

Numbers and where they come from (approximate textbook values)
---------------------------------------------------------------
* Appearance of ossification centres (girls / boys, months): capitate 2/2,
  hamate 3/3, distal radius 10/15, triquetrum 21/30, lunate 36/48, scaphoid
  51/66, trapezium 50/66, trapezoid 54/72, distal ulna 72/90, pisiform
  108/144, adductor sesamoid 132/156; phalangeal and metacarpal epiphyses
  10-24 months in girls (x1.45 in boys) in the Greulich-Pyle order (proximal
  phalanges 3, 2, 4 first; distal phalanges 2 and 5, middle phalanx 5 last).
  Greulich & Pyle, Radiographic Atlas of Skeletal Development of the Hand and
  Wrist (2nd ed., 1959); Garn et al. (1967); Gilsanz & Ratib, Hand Bone Age
  (2005). Each centre's age jitters per child (lognormal, ~10%).
* Complete physeal fusion (bone age, girls / boys, months): distal phalanges
  165/190, middle 171/195, proximal 174/198, metacarpals 177/201 (thumb
  173/197), distal ulna 186/207, distal radius 193/213; a physis is
  "fusing" in the 15 months before. Distal phalanges first, radius last.
* SD of bone age about chronological age: 1.5-3 months in infancy rising to
  10-12 months from school age (Greulich-Pyle / Brush Foundation tables).
* Hand length (wrist crease to tip of the middle finger), boys / girls:
  ~62/60 mm at birth, ~110/108 mm at 4 y, ~146 mm at 10 y, ~190/174 mm
  grown (child anthropometry, e.g. Snyder et al. 1977); adult bone lengths
  and widths from standard anatomy texts (third metacarpal ~64 mm, etc.).
* Linear attenuation at the ~35 keV effective energy of a 50-60 kVp hand
  beam (NIST XCOM / ICRU 44 tissues): soft tissue 0.031 /mm, cortical bone
  0.17 /mm, cancellous bone 0.065 /mm; bone mineral rises ~20% with maturity.
* Detector: quantum noise in the log domain growing as exp(A/2) behind
  denser parts, detector blur 0.07-0.15 mm (CR blurrier), heel-effect
  gradient, histogram-based processing with a tone curve and unsharp-mask
  edge enhancement, optional collimator shutters, a lead "L" marker.

Detector mode
-------------
``acquisition="detector"`` (`detector`, `department`, `variants`, on
`synth/xr_physics.py`) adds a polychromatic exposure, scatter and grid, the
CR/DR detector and each vendor's processing, what departments produce
(casts, jewellery, markers, collimation, a second hand, pose, exposure,
low-resolution and 8-bit exports) and normal variants; docs/realism.md.

What it does NOT model
----------------------
In the default mode: scatter and the grid; the real shapes of carpal bones (ellipsoids here),
joint surfaces and the metaphyseal details Tanner-Whitehouse scoring uses
(only the size/capping/fusion stages are drawn); flexed or overlapping
fingers; growth disorders, fractures, dysplasias, Madelung deformity, rickets
or any pathology; sex differences in bone shape beyond size and timing; hand
size that would betray the chronological age less than real life does.
The oblique view is a cheap foreshortened PA, not a real 45-degree projection.

Layout: `subject` (the child and the growth tables), `skeleton` (bones as
tubes and blobs), `projection` (path lengths on the detector),
`acquisition` (view, exposure, noise, processing; `render`, `sample`),
`study` (`generate`: the DICOM study).
"""

from radtriage.synth.xr_hand.acquisition import HandOptions, HandSample, _make_view, _truth, render, sample
from radtriage.synth.xr_hand.skeleton import _skeleton
from radtriage.synth.xr_hand.study import (
    BITS_STORED, DETECTOR_SPACING, OBLIQUE_DESCRIPTIONS, PA_DESCRIPTIONS, STUDY_DESCRIPTIONS, generate,
)
from radtriage.synth.xr_hand.subject import (
    CARPAL_ORDER, CARPALS, DAYS_PER_MONTH, FUSING_MONTHS, FUSION, MAX_BONE_AGE, ONSET, TEMPLATE_HAND_LENGTH,
    Subject, SubjectOptions, draw_subject, hand_length_mm,
)

__all__ = ["BITS_STORED", "CARPALS", "CARPAL_ORDER", "DAYS_PER_MONTH", "DETECTOR_SPACING", "FUSING_MONTHS", "FUSION",
           "MAX_BONE_AGE", "OBLIQUE_DESCRIPTIONS", "ONSET", "PA_DESCRIPTIONS", "STUDY_DESCRIPTIONS",
           "TEMPLATE_HAND_LENGTH", "HandOptions", "HandSample", "Subject", "SubjectOptions", "_make_view",
           "_skeleton", "_truth", "draw_subject", "generate", "hand_length_mm", "render", "sample"]
