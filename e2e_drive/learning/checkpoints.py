"""The checkpoint format, re-exported from :mod:`e2e_drive.nets.checkpoints` (its home, below the agents),
and the run-folder helpers that used to live here (:mod:`e2e_drive.learning.run_folder`).

Kept so that ``from e2e_drive.learning.checkpoints import load_checkpoint, save_checkpoint, ...``
(tests, notebooks, older scripts) keeps working.
"""

from __future__ import annotations

from e2e_drive.learning.run_folder import code_version, load_resume_state  # noqa: F401 - re-exports
from e2e_drive.nets.checkpoints import (  # noqa: F401 - re-exports
    CHECKPOINT_FORMAT,
    atomic_torch_save,
    atomic_write_text,
    card_path,
    check_state_dict,
    load_checkpoint,
    load_weights_only,
    read_card,
    save_checkpoint,
)
