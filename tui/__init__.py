"""tunedeck's terminal app: screens and widgets that watch core workers; never imports torch."""
