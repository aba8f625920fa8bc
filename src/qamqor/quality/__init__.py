"""Data quality: cross-registry checks, issues owned by the source registry, scorecards."""
