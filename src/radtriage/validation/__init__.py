"""`radtriage validate`: a model's metrics on a labelled dataset, as ``metrics.json`` and ``report.html``.

`evaluate` holds the metrics (pure functions of labels, predictions, groups
and a threshold), `run` the runner that loads the model and the examples,
`report` the self-contained HTML page.
"""
