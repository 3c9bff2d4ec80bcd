"""The ability suite: short scripted scenarios, each measuring one driving ability."""
