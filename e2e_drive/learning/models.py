"""The policy networks, re-exported from :mod:`e2e_drive.nets.models` (their home, below the agents).

Kept so that ``from e2e_drive.learning.models import ModelConfig, build_model, preprocess, ...``
(tests, notebooks, older scripts) keeps working.
"""

from __future__ import annotations

from e2e_drive.nets.models import (  # noqa: F401 - re-exports
    MODELS,
    DrivingNet,
    ModelConfig,
    NatureCNN,
    PilotNet,
    build_model,
    count_parameters,
)
from e2e_drive.nets.preprocessing import preprocess  # noqa: F401 - re-export
