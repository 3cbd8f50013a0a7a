"""The one configuration object of DancingSkeletons."""

from config.settings import MODEL_DEFAULTS, Config, ModelDefaults

__all__ = ["Config", "ModelDefaults", "MODEL_DEFAULTS"]
