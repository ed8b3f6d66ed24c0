"""Synthetic chest CT with pulmonary nodules (``ct-chest``).

What it models
--------------
An adult non-contrast chest CT, supine, feet-first or head-first does not
matter (slices are stored feet to head), axial, 1-2.5 mm slices, from just
above the lung apices to below the posterior costophrenic recesses (a
fixed slice count centred on the lungs on request). Anatomy
lives in a *body frame* (mm; X to the patient's left, Y posterior, Z up,
Z = 0 at the carina) and is drawn as analytic shapes with partial-volume
ramps, then placed in the scanner with a random offset and a small roll:

* body outline (elliptic, flattened where the back lies on the table) with a
  subcutaneous fat layer (~ -100 HU) and breasts in women; chest-wall muscle
  (~ 40 HU; paraspinal and pectoral bulk); a carbon-fibre table below;
* ribs as oblique elliptic bars of cancellous bone with a cortical shell
  (~ 150-300 HU marrow, 600-1000 HU cortex) that run down from back to front
  so each slice cuts several, costal cartilage (~ 100 HU) in front; sternum,
  scapulae; thoracic spine with vertebral bodies, discs (~ 90 HU), spinal
  canal (~ 20 HU) and posterior elements;
* lungs (-880 to -830 HU with a gravity-dependent gradient of 30-90 HU and a
  gentle texture), apices as domes, diaphragm as two domes (the right one
  higher) with liver, spleen and stomach (with its gas cap) below;
* mediastinum (fat ~ -95 HU), heart (~ 40 HU blood/myocardium) in its
  epicardial fat, ascending aorta, arch, descending aorta, great vessels,
  SVC, IVC, pulmonary trunk and arteries, oesophagus; trachea and main
  bronchi (air with a 1.5-2.5 mm wall);
* pulmonary arteries and veins as two space-filling trees per lung grown by
  recursive domain splitting (Kitaoka et al., J Appl Physiol 1999) with
  Murray-like radii (r ~ n^(1/2.8)), 8-11 mm at the hila down to ~0.5 mm at
  the periphery (veins from the left atrium likewise); bronchi (air, walls
  0.3 r + 0.25 mm) run beside the arteries down to ~1 mm lumen radius. Cut across, vessels look like small round nodules - the
  classic false positive of nodule detection;
* 0-5 nodules: solid (10-60 HU), part-solid (ground glass with a solid core
  of 25-65 % of the diameter), ground-glass (-650 to -400 HU, faint texture,
  vessels stay visible through it) and calcified (250-900 HU); 3-30 mm
  (log-uniform; calcified 3-12 mm), smooth, lobulated or (solid) spiculated,
  mostly >= 4 mm inside the lung, some juxtapleural (touching the pleura);
  never overlapping a vessel or bronchus of radius >= 1.5 mm.
* the scanner: display FOV 300-500 mm, 512 matrix by default (0.6-1.0 mm
  pixels; smaller matrices on request), slice interval 1.25-2.5 mm drawn
  (1.0 or less on request), thickness = interval or 25 % more (overlap),
  soft (e.g. Br40/STANDARD) or lung (e.g. Bl57/LUNG) kernel, noise from the
  protocol (routine, low-dose screening, HRCT, follow-up), the kernel, the
  slice thickness and the patient size, slightly higher at the shoulders;
  noise texture correlated in-plane (smoother for the soft kernel); in-plane
  blur (a kernel-dependent PSF) and slice-profile partial volume; a random
  table height, body offset (+/- 18 mm) and roll (+/- 3.4 degrees); -1024
  padding outside the 500 mm scan field. Nodule and nodule-free studies
  drawn from one seed are identical outside the nodules (separate random
  streams for anatomy, scanner, nodules and noise), so nothing but the
  lesion tells them apart.

Numbers and where they come from (textbook values, approximate)
---------------------------------------------------------------
HU of tissues: air -1000, lung -900 to -800 (Hounsfield; Webb, Fundamentals
of Body CT), fat -120 to -80, muscle 35-55, unenhanced blood 35-50, liver
45-65, spleen 40-50, cancellous bone 150-300, cortical bone > 600
(Brant & Helms, Fundamentals of Diagnostic Radiology). Nodule classes and
sizes after Fleischner Society 2017 and Lung-RADS v2022 (solid, part-solid,
ground-glass; calcified = benign). Airway/vessel calibre: trachea 15-22 mm,
main bronchi 10-14 mm, lobar pulmonary arteries 8-11 mm radius; broncho-
arterial ratio ~0.7 (Weibel, Morphometry of the Human Lung; Kitaoka 1999).
Rib pitch 24-30 mm, vertebral level 23-28 mm, right diaphragm dome 88-115
mm below the carina (left 8-22 mm lower), lung apex 70-95 mm above it,
posterior recesses up to 85 mm below the domes (Gray's Anatomy, adult
ranges). CTDIvol 5-12 mGy routine, 0.8-3 mGy low-dose screening (ACR
dose index registry ranges); image noise 9-20 HU (soft kernel, routine,
1.25 mm) rising with lower dose, thinner slices and sharper kernels.

What it does NOT model
----------------------
Contrast enhancement, fissures, lobar anatomy of the trees (branching is
space-filling, not named segments), emphysema, fibrosis, effusion,
atelectasis, consolidation, lymph nodes, masses > 30 mm, coronary or aortic
calcification, clavicles and humeri (arms are up), kidneys and bowel,
breathing or cardiac motion, beam hardening, streaks, photon starvation,
helical or cone-beam artefacts; the noise is an in-plane-correlated
stationary field (not a projection-domain simulation). The static anatomy is
rendered at half the in-plane resolution for 512+ matrices and upsampled;
vessels, airways and nodules are rendered at full resolution.

Layout: `body` (the drawn patient and scan, nodules and tube types),
`plane` (static anatomy on an axial plane), `tubes` and `lungs` (vessel and
airway trees, the lung map, nodules), `raster` (capsules with partial
volume), `acquisition` (rendering, noise, localizer), `volume` (`sample`:
one volume and its truth), `study` (`generate`: the DICOM study).
"""

from radtriage.synth.ct_chest.body import (
    NODULE_TYPES, PROTOCOLS, SLICE_SPACINGS, Body, Nodule, Scan, Tubes, draw_body,
)
from radtriage.synth.ct_chest.lungs import nodule_volume
from radtriage.synth.ct_chest.study import generate
from radtriage.synth.ct_chest.volume import ChestCtOptions, ChestCtSample, sample

__all__ = ["NODULE_TYPES", "PROTOCOLS", "SLICE_SPACINGS", "Body", "ChestCtOptions", "ChestCtSample", "Nodule",
           "Scan", "Tubes", "draw_body", "generate", "nodule_volume", "sample"]
