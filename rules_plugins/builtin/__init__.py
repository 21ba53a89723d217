"""Built-in rules and messages: plugins like any rule pack, listed in rules_plugins.plugins.DEFAULT_PLUGINS."""
