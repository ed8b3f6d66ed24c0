"""The ``monitor:`` section of a pipeline file: what the model monitor (`radtriage.monitor`) expects of a
live pipeline at this site, when it warns the admins and when it demotes the pipeline by itself.

Rates are shares of the last ``window`` live results (since the pipeline's last decision); a rate warns
only when it is out of its range beyond chance (the 95% interval of the window's rate), the score and
input-mix statistics only on ``drift_results`` results or more (PSI is biased upwards on small samples).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StrictBool, StrictStr, model_validator

from radtriage.rules import StrictModel

Share = Annotated[float, Field(strict=False, ge=0, le=1)]
Count = Annotated[int, Field(strict=True, ge=1)]


class Baseline(StrictModel):
    """A score histogram: bin ``edges`` and counts per bin, of negatives and positives (mixed at the site's
    ``prevalence``) or of all cases (``counts``); ``source`` says where it was measured."""

    source: Annotated[StrictStr, Field(min_length=1)]
    edges: list[float] = Field(min_length=3)
    negative: list[Annotated[int, Field(ge=0)]] | None = None
    positive: list[Annotated[int, Field(ge=0)]] | None = None
    counts: list[Annotated[int, Field(ge=0)]] | None = None

    @model_validator(mode="after")
    def _shape(self) -> "Baseline":
        if any(b <= a for a, b in zip(self.edges, self.edges[1:])):
            raise ValueError("edges must increase")
        given = [k for k in ("negative", "positive", "counts") if getattr(self, k) is not None]
        if given not in (["negative", "positive"], ["counts"]):
            raise ValueError("give negative and positive counts, or counts")
        for k in given:
            if len(getattr(self, k)) != len(self.edges) - 1:
                raise ValueError(f"{k}: one count per bin ({len(self.edges) - 1})")
        return self


class PositiveRate(StrictModel):
    """The share of results flagged positive: ``expected`` [low, high] warns outside it; ``hard_max`` (and
    ``hard_min``) demote the pipeline once the window holds at least ``hard_min_results`` results."""

    expected: tuple[Share, Share]
    hard_max: Share | None = None
    hard_min: Share | None = None
    hard_min_results: Count = 40

    @model_validator(mode="after")
    def _order(self) -> "PositiveRate":
        low, high = self.expected
        if low > high:
            raise ValueError("expected: [low, high]")
        if self.hard_max is not None and self.hard_max <= high:
            raise ValueError("hard_max must be above the expected range")
        if self.hard_min is not None and self.hard_min >= low:
            raise ValueError("hard_min must be below the expected range")
        return self


class ScoreDrift(StrictModel):
    """The distribution of result score ``key`` against the commissioning baseline (the promoting
    evidence's scores, else ``baseline``): PSI above ``psi_max`` warns."""

    key: Annotated[StrictStr, Field(min_length=1)]
    prevalence: Share | None = None  # how common the finding is here: mixes a two-class baseline
    psi_max: Annotated[float, Field(gt=0)] = 0.25
    baseline: Baseline | None = None


class InputMix(StrictModel):
    """Manufacturer, scanner model, kernel, slice thickness, kVp and pixel spacing of the window against the
    results before it: a PSI above ``psi_max`` for one of them warns."""

    psi_max: Annotated[float, Field(gt=0)] = 0.5
    reference: Count = 400  # results before the window compared with it


class MonitorSpec(StrictModel):
    enabled: StrictBool = True
    window: Count = 100
    min_results: Count = 30  # rates are not judged on fewer results
    drift_results: Count = 100  # score and input-mix drift are not judged on fewer
    positive_rate: PositiveRate | None = None  # required while enabled
    score: ScoreDrift | None = None
    input_mix: InputMix = Field(default_factory=InputMix)
    agreement_min: Share | None = 0.7  # readers' agree / (agree + disagree) on the window's results
    min_feedback: Count = 10
    failure_rate_max: Share = 0.05  # failed for good, of the pipeline's attempts in the window's time
    no_ai_rate_max: Share = 0.2  # refused by the input guard ("AI not applicable"), likewise
    reason: Annotated[StrictStr, Field(min_length=1)] | None = None  # why these numbers; required while enabled

    @model_validator(mode="after")
    def _complete(self) -> "MonitorSpec":
        if not self.enabled:
            return self
        if self.positive_rate is None or self.reason is None:
            raise ValueError("an enabled monitor needs positive_rate and reason (or enabled: false)")
        if max(self.min_results, self.drift_results, self.positive_rate.hard_min_results) > self.window:
            raise ValueError("min_results, drift_results and positive_rate.hard_min_results must not exceed window")
        return self
