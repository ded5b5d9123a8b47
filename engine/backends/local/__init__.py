"""The embedded backend: a GGUF model in-process through llama.cpp's low-level API.

One module per concern: `model_file` finds the model and loads llama.cpp, `layout` probes how the weights may
be laid out on this CPU, `gguf` reads the model's vocabulary and chat template, `decoder` batches sequences on
one thread, `jobs` holds a request's continuations as they grow, `kv_sequences` which sequences hold which
prefixes, `token_batch` the batch handed to llama.cpp, `sampling` draws tokens with exact log-probabilities, and
`backend` is the Sampler the engine uses.
"""
