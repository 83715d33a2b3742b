"""Building a model's posterior and prior components from what a recipe, a Python caller or an export gives.

A component's constructor takes the sizes the model knows first (``input_dim``/``condition_dim``,
``latent_dim``) and its own settings as keywords. A recipe names it by import path::

    posterior:
      class_path: textvae.posteriors.IAFPosterior
      init_args: {num_flows: 2}

which LightningCLI turns into a callable waiting for the two sizes (the dependency-injection form it
uses for optimizers); a Python caller passes the class or ``functools.partial(IAFPosterior, num_flows=2)``;
an export's ``config.json`` holds the spec dict ``{"class_path": ..., "init_args": {...}}``. Every
component keeps its own settings in ``init_args``, so the model records ``spec(component)`` and a JSON
export rebuilds exactly it. Spec dicts may only name classes inside ``textvae`` (an export can never
make us import other code).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

T = TypeVar("T", bound=nn.Module)


def textvae_class(class_path: str, base: type[T]) -> type[T]:
    """The class at ``class_path``, which must lie inside ``textvae`` and derive from ``base``; ValueError
    otherwise (an export or a spec can never make us import other code)."""
    module_name, _, name = class_path.rpartition(".")
    if not module_name.startswith("textvae."):
        raise ValueError(f"class {class_path!r} is not a textvae class; refusing to import it")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError):
        raise ValueError(f"unknown class {class_path!r}; was it written by a newer textvae?") from None
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ValueError(f"{class_path!r} is not a {base.__name__}")
    return cls


def build(component: Callable[..., T] | dict[str, Any], base: type[T], *sizes: int) -> T:
    """The component for these sizes, from a class, a callable (LightningCLI's, a partial) or a spec dict."""
    if isinstance(component, dict):
        if set(component) - {"class_path", "init_args"} or "class_path" not in component:
            raise ValueError(f"a component spec is {{'class_path': ..., 'init_args': {{...}}}}, got {component!r}")
        cls = textvae_class(str(component["class_path"]), base)
        module = cls(*sizes, **(component.get("init_args") or {}))
    else:
        module = component(*sizes)
    if not isinstance(module, base):
        raise ValueError(f"{component!r} built a {type(module).__name__}, not a {base.__name__}")
    return module


def spec(module: nn.Module) -> dict[str, Any]:
    """What rebuilds ``module`` with :func:`build`: its class path and its own settings (``init_args``)."""
    cls = type(module)
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": dict(module.init_args)}
