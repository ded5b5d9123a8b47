"""`beamtui proxy`'s use case: OpenAI requests in, searches run, OpenAI answers out (the HTTP face is in tui)."""
