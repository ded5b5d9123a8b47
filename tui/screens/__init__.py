"""Modal screens: the prompt editor and the backend settings."""
