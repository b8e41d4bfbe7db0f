"""Built-in models. Each module registers itself by name; add one import line per new model."""

from sciformer.models import itransformer  # noqa: F401
