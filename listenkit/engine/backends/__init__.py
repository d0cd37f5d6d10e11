"""The two backends of ``run_patching``: ``hooks`` (plain torch hooks, restarts each
patched run at its layer; the default) and ``nnsight`` (the same interventions as
nnsight traces; the road to NDIF). Both build on ``engine.batch``, never on each other."""
