"""Real-world evaluation sets for digitlab: generator (build_sets) and image effects (render)."""
