"""Synthetic adult non-contrast CT head, with or without acute intracranial haemorrhage.

What it models
--------------
An analytic head phantom, drawn anew for every study in a "standard head"
frame that is scaled, rotated and placed in the gantry, rendered slice by
slice at about 0.9 mm in-plane with sub-slices at most 1.7 mm apart through
the slice thickness, then passed through a simple reconstruction chain: slab
averaging over the thickness (partial volume), a Gaussian point-spread
function of the kernel (0.45-0.7 mm for the soft-tissue kernel), linear
resampling to the output matrix, FBP-like correlated noise (a ramp-shaped
noise power spectrum) that is higher through the centre of the head and in
the posterior fossa, and int16 quantisation; pixels outside the
reconstruction circle read -1024 as many scanners write them.

Acquisition: matrix 512 (smaller on request), display FOV 215-250 mm centred
on the head within a few mm, axial slices of 5 mm (55 %), 4, 3.75, 3 or
2.5 mm from the foramen magnum to the vertex (28-40 slices at 4-5 mm,
45-65 at 2.5-3 mm, as such a series holds on a real scanner), or thin
0.625-1.25 mm on request; head rotation SD 2.5 deg yaw, 4 deg pitch, 2 deg
roll; brain noise 2.5-4.5 HU SD at 5 mm and 55 mGy CTDIvol, scaled with
thickness and dose; kVp 100/120/140, CTDIvol 38-65 mGy; a carbon-fibre head
cradle with a foam pad under the occiput. `generate` adds a lateral
localizer and a bone-kernel twin of the main series.

Anatomy (typical textbook values, as in Osborn's *Brain* and standard CT
physics texts; shapes after sectional anatomy atlases):

- air outside -1000 HU; scalp soft tissue 30-45 HU (skin, galea, temporalis
  muscle thicker over the temporal squama);
- skull vault 5.5-8 mm (3-4 mm over the temporal squama), cortical tables
  1200-1900 HU around a diploe of 300-700 HU; skull base with orbital roofs,
  middle cranial fossae, sella and clivus, dense petrous ridges, mastoid and
  frontal/sphenoid/ethmoid air cells; orbits (fat -90 HU, vitreous ~8 HU,
  lens ~110 HU);
- grey matter 35-40 HU, white matter 8-12 HU lower (25-30 HU), CSF 2-8 HU;
  cortical ribbon ~2.7 mm lining sulci (a random gyral pattern), caudate,
  lentiform nucleus, thalamus and insular cortex; interhemispheric fissure with
  the falx, Sylvian fissures, suprasellar and perimesencephalic cisterns,
  tentorium, cerebellum with folia, brainstem, fourth ventricle, cisterna
  magna; lateral ventricles (frontal and occipital horns, bodies, atria,
  temporal horns), third ventricle;
- normal findings that mimic disease: venous blood in the superior sagittal
  and transverse sinuses (40-55 HU), pineal, choroid plexus, falx, basal
  ganglia and carotid siphon calcification (80-700 HU), periventricular white
  matter hypodensity and lacunes with age, scalp haematoma;
- variation: head size and shape (scale, cephalic index, posterior widening),
  rotation of a few degrees, position in the gantry, age-related atrophy
  (sulci, fissures and ventricles widen), left/right ventricle asymmetry.

Haemorrhage (the five RSNA ICH subtypes; appearances as reviewed in Osborn's
*Brain* and Heit, Iv & Wintermark, "Imaging of intracranial hemorrhage",
J Stroke 2017):

- intraparenchymal: lobulated ellipsoid 1-90 mL at typical hypertensive
  (putamen, thalamus, pons, cerebellum) or lobar sites, 55-85 HU, with a
  low-density oedema rim (14-22 HU, 1.5-6 mm) and mass effect when large;
- intraventricular: 50-80 HU blood layering in the dependent occipital horns
  (patient supine), or a cast of the ventricular system;
- subdural: crescent along the inner table, up to 22 mm thick, not crossing
  the midline, 50-80 HU, sometimes with hypodense hyperacute foci;
- epidural: biconvex lens against the skull, 60-90 HU, sometimes with a
  swirl, an overlying fracture and scalp swelling;
- subarachnoid: 45-70 HU blood filling CSF spaces: basal cisterns and
  Sylvian fissures (aneurysmal), convexity sulci (traumatic), or around the
  midbrain (perimesencephalic).

Truth per haemorrhage: subtype, location, side, the slices it appears on
(at least 0.02 mL of blood in the slice), a centre inside it (the blood
voxel nearest its centroid, as a (z, y, x) index and patient x, y, z mm),
its centroid, its volume in mL (partial-volume weighted) and its density;
per study, slice-level labels for "any" and each subtype, and a voxel label
volume (`CtHeadSample.labels`).

Scanner mode (``acquisition="scanner"``, `scanner` and `synth.ct_physics`)
replaces that chain with a projection model (polychromatic attenuation, noise
for the mAs, beam hardening, metal streaks, motion, filtered back-projection)
and draws normal mimics and children (`mimics`, truth "mimics"); the default
is the phantom mode described above, which what follows is about.

What the phantom mode does NOT model: beam-hardening streaks and cupping, motion, metal,
gantry tilt (pitch is modelled as head rotation instead), sutures and
fractures other than one line beside an epidural haematoma, scalp vessels,
contrast, chronic or subacute (iso/hypodense) collections, haematocrit
levels, contusions, infarcts, tumours, diffuse axonal injury, herniation
beyond a smooth shift of the deep structures, the face below the maxilla
(only the localizer sees the neck, as soft tissue around a spine column).
Anatomy is plausible at the level of a screening model, not an atlas.

Layout: `anatomy` (the drawn head), `lesions` (the drawn haemorrhages and
their shapes), `frame` (the standard head frame, grid and soft shapes),
`render` and `brain` (the noiseless phantom), `acquisition` (scanner draw,
slice rendering, reconstruction and noise, localizer), `volume` (`sample`: one volume
and its truth), `study` (`generate`: the DICOM study).
"""

from radtriage.synth.ct_head.anatomy import _Anatomy, _draw_anatomy
from radtriage.synth.ct_head.lesions import (
    PRIMARY_WEIGHTS, SLICE_MIN_ML, SUBTYPE_CODE, SUBTYPES, _Bleed, _draw_bleeds,
)
from radtriage.synth.ct_head.volume import CtHeadOptions, CtHeadSample, sample
from radtriage.synth.ct_head.study import STUDY_DESCRIPTIONS, generate

__all__ = ["PRIMARY_WEIGHTS", "SLICE_MIN_ML", "STUDY_DESCRIPTIONS", "SUBTYPES", "SUBTYPE_CODE", "CtHeadOptions",
           "CtHeadSample", "_Anatomy", "_Bleed", "_draw_anatomy", "_draw_bleeds", "generate", "sample"]
