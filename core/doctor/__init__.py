"""`tunedeck doctor`: what this machine can train with, measured, each problem with its fix."""
