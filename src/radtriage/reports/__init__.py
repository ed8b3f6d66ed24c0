"""Reports: from a study's live AI results to a radiologist's signed report, in English and Traditional Chinese.

- `draft`: a structured draft per language (examination, technique from the series headers, findings with
  their measurements, impression, the AI-assistance sentence) from the study's LIVE results only, through
  the templates of `templating` (data files a site edits; `glossary.yaml` holds the Chinese terms).
- `facts`: what each finding says, taken from the stored finding the worklist shows (never recomputed).
- `signing`: the rules: radiologists edit and sign, others read; a signed report is final and a change after
  signing is a signed addendum sent as an amendment; a draft leaves only where the site allows it, as
  preliminary. Reports leave through `radtriage.exports` (outbox kind ``export``, payload ``report_id``).
"""

SECTIONS = ("examination", "technique", "findings", "impression", "ai_statement")
DRAFT, SIGNED = "draft", "signed"
