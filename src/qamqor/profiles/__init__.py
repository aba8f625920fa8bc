"""Household profiles: features defined in SQL over registry facts, versioned, traceable."""
