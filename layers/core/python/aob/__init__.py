"""AOB shared library: models, services, ports and adapters shipped as the `core` Lambda layer."""

__version__ = "0.1.0"
