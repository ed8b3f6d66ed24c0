"""Synthetic studies with known ground truth, written as real DICOM.

Every generator is a function ``generate(rng, index, folder) -> truth`` that
writes one study (all its series) under ``folder`` and returns its ground
truth as a JSON-able dict. `GENERATORS` names them by kind; `synthesize`
writes N studies for a seed, each with its ``truth.json``.
"""

from radtriage.synth.run import GENERATORS, GENERATOR_VERSION, synthesize

__all__ = ["GENERATORS", "GENERATOR_VERSION", "synthesize"]
