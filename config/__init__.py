"""Settings, per-form configuration and the error root."""

from config.errors import ConfigError, EtlError, FormConfigError, Transient
from config.forms import FormConfig, Schedule, SyncOptions, load_form_config, load_form_configs, slugify
from config.settings import DEMO_PSEUDONYMISATION_KEY, Settings, load_settings

__all__ = [
    "ConfigError", "EtlError", "FormConfigError", "Transient", "FormConfig", "Schedule", "SyncOptions",
    "load_form_config", "load_form_configs", "slugify", "Settings", "load_settings",
    "DEMO_PSEUDONYMISATION_KEY",
]
