"""Learning from demonstrations: datasets of expert driving, BC / two-stage / aux training, DAgger, PPO fine-tuning.

Modules: ``dataset`` (shards, labels, the streaming loader), ``collect`` (drive the expert and
write shards, in parallel, resumable), ``train`` (behaviour cloning), ``dagger``, ``rl`` (PPO
fine-tuning), ``run_folder`` (a run's key, resume state, logs and model card), ``cli_commands``.
The networks, their checkpoint format and frame preprocessing live in :mod:`e2e_drive.nets`
(below the agents, which drive them); ``models`` and ``checkpoints`` here re-export them.
Torch is imported only by the modules that need it.
"""
