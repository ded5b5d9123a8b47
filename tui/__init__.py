"""beamtui's faces: the Textual dashboard and the headless commands, both fed by the engine's events."""
