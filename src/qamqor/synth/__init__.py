"""Synthetic national population with ground truth, and the registry extracts derived from it.

``generate`` writes one extract per source registry (formats as real registries send them),
the ground truth under ``truth/`` (persons, households, defects) and a ``manifest.json``.
"""

from qamqor.synth.defects import DEFAULT_DEFECT_RATES, DEFECT_CLASSES
from qamqor.synth.generate import SynthSummary, generate
from qamqor.synth.writers import DEFAULT_FORMATS, FormatSpec, parse_format_override

__all__ = [
    "DEFAULT_DEFECT_RATES",
    "DEFAULT_FORMATS",
    "DEFECT_CLASSES",
    "FormatSpec",
    "SynthSummary",
    "generate",
    "parse_format_override",
]
