"""One module per dashboard panel. Each panel renders itself from a `tui.state.RunState` in `show()`."""
