"""Export: merge a run's adapter, convert to GGUF, quantize, write Ollama Modelfiles and verify them."""
