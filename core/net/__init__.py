"""Network specs and the adapters they build on a torch module (one algorithm per module, a registry)."""
from .spec import NetworkSpec
from .registry import ALGORITHMS, register_algorithm, algorithm_class
from .network import Network, TargetLayer

__all__ = ["NetworkSpec", "ALGORITHMS", "register_algorithm", "algorithm_class", "Network", "TargetLayer"]
