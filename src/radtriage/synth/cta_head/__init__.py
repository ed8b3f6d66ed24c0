"""Synthetic CT angiography of the head (``cta-head``), with or without a large-vessel occlusion.

What it models
--------------
A thin-slice axial CTA of the head in the arterial phase, as a scanner
reconstructs it (soft kernel, 0.625-1.25 mm slices, 512 x 512 over a
200-250 mm field of view, from the skull base to above the circle of Willis):

* the head as an analytic phantom in an anatomical frame (u toward the
  patient's left, v posterior, w superior; origin at the centre of the circle
  of Willis), placed in the scanner with a random shift and a small yaw,
  pitch and roll. Scalp, a two-table skull vault with diploe, the skull base
  (anterior fossa with the cribriform dip, sphenoid ridges, middle fossae,
  petrous ridges, sella turcica, dorsum sellae and clivus, posterior fossa),
  petrous pyramids, sphenoid body and sinus, ethmoid, mastoid and maxillary
  air, orbits (fat, globes, lenses), nasopharynx;
* the brain as cortex over white matter under a subarachnoid CSF layer that
  thickens with age, deep grey nuclei, lateral / third / fourth ventricles
  and temporal horns (larger with age), the suprasellar and quadrigeminal
  cisterns, the interhemispheric fissure, pineal and choroid-plexus
  calcifications (some studies);
* arteries as tubes along cubic splines through jittered control points,
  each in its CSF cistern (the sleeve: sylvian fissure for M1/M2, prepontine
  cistern for the basilar, ambient cistern for the PCAs): both ICAs from the
  petrous canal through the cavernous siphon to the terminus, ophthalmic
  arteries, A1 segments, the anterior communicating artery, A2 / pericallosal
  arteries, M1 (with anterior temporal branch and lenticulostriates), the
  superior and inferior M2 divisions with M3 branches to the cortex,
  posterior communicating arteries, vertebral arteries (PICA), basilar
  (AICA, SCA), P1 and P2. Common variants: absent/hypoplastic PCom, fetal
  PCA, hypoplastic A1, vertebral dominance, basilar tortuosity, M1 length,
  calcified plaque in the carotid siphons (more with age);
* venous contamination: superior sagittal, transverse, sigmoid and straight
  sinuses, vein of Galen, internal cerebral veins and cavernous sinuses, with
  an enhancement that varies with bolus timing;
* optional large-vessel occlusion (ICA terminus, M1 or proximal M2 -- the
  superior or inferior division -- on the left or the right): the contrast
  column stops abruptly at the thrombus (a non-enhancing tube of 40-70 HU
  in the cistern), the vessel beyond the thrombus and the trunks it feeds
  are faint or absent (0-25 % of the normal enhancement), and cortical
  branches fill weakly by leptomeningeal collaterals (5-50 %). With an ICA-T
  occlusion the ipsilateral A1 usually fills across the AComm.
* partial volume: every edge is the analytic profile of a Gaussian point
  spread (in-plane kernel blur, slice sensitivity profile and voxel size
  combined), including the reduced peak of vessels thinner than the blur;
  CT noise correlated over neighbouring pixels (a [1 2 1] kernel), larger in
  thin slices and at 100 kVp, and larger at the skull base.

Numbers and where they come from (approximate textbook values)
---------------------------------------------------------------
* Attenuation (HU): grey matter 37-45, white matter 25-32 (both ~3-5 HU
  higher after iodinated contrast), CSF 0-15, fat -80 to -100, soft tissue
  35-55, cortical bone of the tables 1300-1900, diploe 500-900, petrous
  bone 1700-2200, unenhanced blood and acute thrombus 40-70, vitreous ~10,
  lens ~110 (Hsieh, Computed Tomography, 3rd ed.; Osborn's Brain, 2nd ed.;
  Lev & Gonzalez on CTA and perfusion). Opacified arteries 250-450 HU (the
  ACR-ASNR-SPR CTA practice parameter aims above 250 HU), ~15 % more at
  100 kVp; dural sinuses 10-90 % of the arterial enhancement by timing.
* Calibres (diameters, mm): cervical/petrous ICA 5, supraclinoid ICA 4,
  M1 2.6-3.2, M2 ~2, M3 ~1.2, A1 ~2 (hypoplastic ~1), A2 ~1.8, basilar
  3.2-3.6, vertebral 2.6-3.6, P1/P2 ~2, PCom 0.8-2, SCA/AICA/PICA ~1,
  ophthalmic ~1.3, lenticulostriates ~0.8; superior sagittal and transverse
  sinuses 6-8 (Rhoton, Cranial Anatomy and Surgical Approaches; Osborn's
  Brain). Lengths: M1 14-30 mm, A1 ~13 mm; ICA termini ~28 mm apart, the
  basilar tip ~15 mm behind them (Rhoton).
* Head: inner table ~132 x 168 mm (width x length), skull 5-8 mm, scalp
  4-7 mm; ventricles and sulci enlarge with age (atrophy from ~40 years).
* Variants and frequencies: PCom absent or hypoplastic ~30 % per side, fetal
  PCA ~15 %, hypoplastic A1 ~10 % (Krabbe-Hartkamp et al., Radiology 1998);
  siphon calcification common over 60 years.
* Acquisition: 100 or 120 kVp, CTDIvol 25-60 mGy; noise 6-12 HU at 1 mm,
  scaled by 1/sqrt(slice thickness); in-plane PSF sigma 0.35-0.55 mm.

What it does NOT model
----------------------
Beam hardening and streaks (Hounsfield bar between the petrous bones),
metal, motion, cone-beam or helical artefacts, gantry tilt; real gyral and
sulcal anatomy (the brain is layered, not folded); the neck vessels and the
aortic arch (the coverage is the head only); aneurysms, stenoses, AVMs,
dissections, moyamoya, carotid-cavernous fistulae; infarct hypodensity,
haemorrhage, tumours; multiphase or perfusion imaging; venous occlusion. The
thrombus always sits at one place; tandem lesions, distal emboli, string
signs and the 'Carotid-T' / 'L' clot shapes beyond a short extension into
M1 are not drawn. Collateral filling is a single grade per study. The
localizer is a coarse (2 mm) lateral line integral of the same phantom with a
cartoon neck; the MIP series keeps the bone (no bone subtraction); the DLP is
only reported in the truth (no dose SR is written).

Layout: `anatomy` (the drawn head, tissue look-up, grid), `vessels`
(arteries with variants, veins, the occlusion), `render` (vessels, tissue
and noise in slabs), `acquisition` (scanner and bolus, localizer, thick
slabs), `volume` (`sample`: one volume and its truth), `study`
(`generate`: the DICOM study).
"""

from radtriage.synth.cta_head.acquisition import localizer
from radtriage.synth.cta_head.anatomy import DIVISIONS, HU_AIR, HU_BLOOD, SEGMENTS, SIDES, SIGN, Grid
from radtriage.synth.cta_head.study import CONTRAST_AGENTS, STUDY_DESCRIPTIONS, generate
from radtriage.synth.cta_head.volume import CtaHeadOptions, CtaHeadSample, sample

__all__ = ["CONTRAST_AGENTS", "DIVISIONS", "HU_AIR", "HU_BLOOD", "SEGMENTS", "SIDES", "SIGN", "STUDY_DESCRIPTIONS",
           "CtaHeadOptions", "CtaHeadSample", "Grid", "generate", "localizer", "sample"]
