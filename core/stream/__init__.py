"""The event stream: typed events, their writer, the tail that follows a growing file and the history it folds."""
