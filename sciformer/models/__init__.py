"""Built-in models: every module in this package is imported once and registers itself by name
(``@register_model``), so adding a model is adding one file."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
