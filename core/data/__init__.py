"""Training data: read files in their many formats into one conversation model, then tokenize."""
