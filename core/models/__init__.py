"""Models: finding and loading base models, chat templates, generation, and opening GGUFs with llama.cpp."""
