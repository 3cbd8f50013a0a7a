"""The one configuration object of DancingSkeletons."""

from config.settings import Config

__all__ = ["Config"]
