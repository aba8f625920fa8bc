"""Published program rules: specs, checking (and, next, evaluation and explanations)."""
