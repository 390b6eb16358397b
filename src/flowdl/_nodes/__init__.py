"""Built-in node modules: merge operations and graph helpers."""
