"""One module per dashboard panel. Each panel renders itself from a `engine.run_state.RunState` in `show()`."""
