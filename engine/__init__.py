"""beamtui's engine: inference-time search (power sampling, beam search, baselines) over language-model backends.

A plain async library: it never imports textual or rich. Consumers read its typed events (`engine.events`).
Importing it registers the built-in strategies (`engine.registry`).
"""

import engine.strategies  # noqa: F401 - registers the built-in strategies
