"""beamtui's engine: block-wise power beam search over language-model backends.

A plain async library: it never imports textual or rich. Consumers read its typed events (`engine.events`).
"""
