"""tunedeck's engine: configs, data, training workers and the event stream; never imports the UI."""
