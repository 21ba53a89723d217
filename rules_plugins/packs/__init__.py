"""Built-in industry packs (one module per industry): facility templates and industry defaults (docs/plugins.md)."""
