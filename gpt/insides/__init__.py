"""Inside a model: the next character's distribution, the characters' map, and the attention maps."""
