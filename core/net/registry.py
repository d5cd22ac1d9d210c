"""Algorithm registry: name -> adapter class. Modules register themselves on import."""
from __future__ import annotations

ALGORITHMS: dict[str, type] = {}


def register_algorithm(name: str):
    def deco(cls):
        cls.algorithm = name
        ALGORITHMS[name] = cls
        return cls
    return deco


def algorithm_class(name: str) -> type:
    from . import modules  # noqa: F401  (fills the registry)
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise ValueError(f"Unknown network algorithm {name!r}; choose one of {sorted(ALGORITHMS)}") from None
