from .shifted import shifted_pairs

__all__ = ["shifted_pairs"]
