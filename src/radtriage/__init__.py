"""radtriage: open AI radiology triage."""

__version__ = "0.1.0"
