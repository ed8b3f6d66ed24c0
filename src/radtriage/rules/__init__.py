"""The select/prefer rule language on DICOM header keywords, and its evaluator.

Low in the house: pipelines (`radtriage.pipelines`), routing, and every other
part that selects series or results by their values may import it.
"""

from radtriage.rules.evaluate import NONE_OF, failure, parse_age, rank_key, select_failures, slices, values_of
from radtriage.rules.schema import (
    EXTRA_KEYWORDS,
    OPERATORS,
    SLICES,
    AnyOf,
    HeaderTest,
    Number,
    Preference,
    Range,
    ResultTest,
    Rule,
    Scalar,
    Select,
    SortKey,
    StrictModel,
    ValueTest,
)

__all__ = [
    "EXTRA_KEYWORDS",
    "NONE_OF",
    "OPERATORS",
    "SLICES",
    "AnyOf",
    "HeaderTest",
    "Number",
    "Preference",
    "Range",
    "ResultTest",
    "Rule",
    "Scalar",
    "Select",
    "SortKey",
    "StrictModel",
    "ValueTest",
    "failure",
    "parse_age",
    "rank_key",
    "select_failures",
    "slices",
    "values_of",
]
