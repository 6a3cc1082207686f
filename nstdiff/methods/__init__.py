"""Built-in methods, one per file; each registers itself with `@register_method`."""
