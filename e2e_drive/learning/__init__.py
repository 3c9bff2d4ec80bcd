"""Learning from demonstrations: datasets of expert driving, CNN policies, BC / two-stage / aux training, DAgger.

Modules: ``dataset`` (shards, labels, the streaming loader), ``collect`` (drive the expert and
write shards, in parallel, resumable), ``models`` (PilotNet-style CNN and the model registry),
``checkpoints`` (state dict + JSON model card), ``train`` (the training loop), ``dagger``.
Torch is imported only by the modules that need it.
"""
