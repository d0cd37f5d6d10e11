"""Root pytest configuration: this suite's fixtures (the claims machinery is the
``listenkit`` pytest plugin, ``listenkit.claims``)."""

pytest_plugins = ["fixtures.models", "fixtures.speech", "fixtures.analyses", "pytester"]
