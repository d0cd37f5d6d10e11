"""The package version (one place; read by evidence files and manifests)."""

__version__ = "0.1.0"
