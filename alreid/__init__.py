"""alreid: active learning for animal re-identification.

Heavy dependencies (torch, ray, mlflow, faiss) are imported lazily by the modules that need them,
so ``import alreid`` stays fast.
"""

__version__ = "0.1.0"

from alreid.errors import AlreidError

__all__ = ["AlreidError", "__version__"]
