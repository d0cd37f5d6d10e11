"""E3: does the listen layer move deeper after LoRA adaptation?

- ``lora``: ``peft`` LoRA on the encoder's attention value projections; merged copies
  for patching
- ``readout``: a linear head on pooled encoder output, sweeps and layer analyses read by it
- ``training``: seeded recipes (prosody head, frozen or with LoRA; LoRA for noisy ASR)
- ``adapter_store``: trained adapters cached on disk, verified, trained once per key

The statistic (centre-of-mass shift, paired cluster bootstrap) is ``listenkit.stats.shift``.
"""
