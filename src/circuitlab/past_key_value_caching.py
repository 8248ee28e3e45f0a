"""TransformerLens's module path for the key/value cache: `from circuitlab.past_key_value_caching import ...`."""

from .model.kv_cache import HookedTransformerKeyValueCache, HookedTransformerKeyValueCacheEntry

__all__ = ["HookedTransformerKeyValueCache", "HookedTransformerKeyValueCacheEntry"]
