"""Config-driven training jobs: config schema, models, trainer, checkpoints, metrics.

`dtrun -n N configs/job.toml` is the usual way in; `disttrain.training.job` runs a job
in-process, `disttrain.training.config.load_config` validates a config file.
"""
from .config import Config, ConfigError, load_config
from .checkpoint import CheckpointError
from .models import register_model, registered_models

__all__ = ["Config", "ConfigError", "load_config", "CheckpointError", "register_model", "registered_models"]
