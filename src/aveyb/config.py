"""Public configuration entry points: the Avey-B config class and its size presets."""

from aveyb.model.configuration_aveyb import (
    DYNAMIC_NORMS,
    LAYER_ARRANGEMENTS,
    PRESETS,
    RANKER_DIRECTIONS,
    SPLIT_WEIGHTINGS,
    AveyBConfig,
    preset_config,
)

__all__ = [
    "AveyBConfig", "PRESETS", "preset_config",
    "DYNAMIC_NORMS", "LAYER_ARRANGEMENTS", "RANKER_DIRECTIONS", "SPLIT_WEIGHTINGS",
]
