"""Command-line entry points: ``scaledet-labels`` (labelspace) and ``scaledet`` (detector)."""
