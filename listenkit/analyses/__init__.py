"""Stage 4, analyses: one package per experiment of the paper.

- ``listen_layer`` (E1/E1b): minimal-pair patching sweeps over layers, CKA and norm profiles
- ``grounding`` (E2/E5): conflict margins and the grounding coefficient, on Whisper's
  decoder and on audio language models
"""
