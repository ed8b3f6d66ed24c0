"""The dose registry: the radiation dose of each CT and X-ray examination, read from its dose SR (RDSR) or
image headers, judged against diagnostic reference levels (DRLs), and the site's own local DRLs.

`model` (what is read, in the registry's units), `rdsr` and `header` (reading), `drl` (reference level
sets and the site's examination mapping), `judge` (above a level, a child, a pregnant patient, a repeat),
`registry` (reports into examinations, the background worker), `notify` (the physicist's messages),
`local` (local DRLs, ICRP 135). Nothing here changes a study's clinical priority.
"""
