"""A loaded base with representations attached: the shared base, composing, slots."""
