"""Backends behind one small async protocol (`engine.sampler.Sampler`): local, openai_compat, tinker_sdk.

`engine.backends.factory` builds and starts the one the settings name.
"""
