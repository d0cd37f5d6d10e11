"""Root pytest configuration: fixture plugins shared by tests/ and claims/."""

pytest_plugins = ["fixtures.models", "fixtures.speech"]
