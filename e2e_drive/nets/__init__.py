"""What it takes to run a driving network: the models, the checkpoint format, frame preprocessing.

A layer just below ``agents``: the e2e agent loads and drives a network from here, and
``e2e_drive.learning`` trains the same networks (and re-exports these modules under their old
names, ``e2e_drive.learning.models`` / ``e2e_drive.learning.checkpoints``). Nothing here imports
agents, learning or anything above them.

Modules: ``labels`` (the perception head's outputs), ``models`` (PilotNet-style CNN, the model
registry), ``checkpoints`` (state dict + JSON model card), ``preprocessing`` (camera frame ->
model input). Torch is imported only by the modules that need it.
"""
