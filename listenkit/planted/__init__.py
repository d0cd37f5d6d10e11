"""Models with a known answer, built on the real Whisper code path, for testing the
machinery: ``encoder`` (a planted listen layer in the encoder), ``decoder`` (audio
read at one decoder layer only, or a prompt cut off after block 1)."""
