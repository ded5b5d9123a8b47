"""The embedded backend: a GGUF model in-process through llama.cpp's low-level API.

One module per concern: `model_file` finds the model and loads llama.cpp, `layout` probes how the weights may
be laid out on this CPU, `gguf` reads the model's vocabulary and chat template, `decoder` batches sequences on
one thread, `sampling` draws tokens with exact log-probabilities, and `backend` is the Sampler the engine uses.
"""
