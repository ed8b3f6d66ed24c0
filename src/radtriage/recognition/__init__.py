"""Examinations recognised across sites: is a study received from another hospital good enough not to repeat?

A recognition list (a data file, e.g. ``recognition/example.yaml``) names examinations that participating
hospitals agree to recognise, each with the series it applies to and its technical criteria, written in the
shared rule language (`radtriage.rules`) plus two checks the rules cannot say: coverage (``min_slices``) and
the dose registry's verdict (``dose_within_drl``). `load_list` checks a file at start-up (file, key and
problem on error); `check_study` says for each item that applies to one of the study's series either
"recognised: meets <item> (criteria met)" or which criterion it misses and why.
"""

from radtriage.recognition.check import Verdict, check_study
from radtriage.recognition.listing import Criterion, Item, RecognitionList, RecognitionListError, load_list

__all__ = ["Criterion", "Item", "RecognitionList", "RecognitionListError", "Verdict", "check_study", "load_list"]
