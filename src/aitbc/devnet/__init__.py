"""``aitbc devnet up``: the whole platform as local processes on embedded defaults."""
