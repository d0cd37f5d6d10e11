"""Root pytest configuration: fixture plugins shared by tests/ and claims/."""

pytest_plugins = [
    "fixtures.models",
    "fixtures.speech",
    "fixtures.stimuli",
    "fixtures.evidence",
    "fixtures.analyses",
    "fixtures.adaptation",
    "fixtures.heads",
    "pytester",
]
