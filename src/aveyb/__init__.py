"""aveyb: Avey-B, an attention-free bidirectional encoder, Hugging Face-native."""

from aveyb.config import AveyBConfig, preset_config

__version__ = "0.1.0"
__all__ = ["AveyBConfig", "preset_config", "__version__"]
