"""Watching live models: each live pipeline's positive rate, score distribution, input mix, readers'
agreement and failure and "no AI" rates over a rolling window, against the expected ranges of its
pipeline file's ``monitor:`` section; a warning goes to the admins and shows on the worklist, a hard
limit demotes the pipeline to shadow by a decision of the system and pages the admin on call.

The rule is `signals.judge` (statistics in `stats`, the baseline in `baseline`); `watch.Monitor`
evaluates and acts, `worker.MonitorWorker` runs it beside the dispatcher, `notify` sends its messages
through the outbox, `status.notices` is the worklist banner. Nothing is imported here, so that the
leaf modules (`stats`, `baseline`) can be imported from below without the rest.
"""
