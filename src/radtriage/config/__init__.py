"""Settings: one pydantic-settings model, built by `load_settings()`."""

from radtriage.config.settings import Peer, Settings, TlsSettings, load_settings

__all__ = ["Peer", "Settings", "TlsSettings", "load_settings"]
