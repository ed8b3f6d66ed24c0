"""Ray Serve deployments of the pipelines, and the dispatcher that feeds them from the job ledger."""
