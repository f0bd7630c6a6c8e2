"""Chat with a model: the JSON-lines protocol, the backends (HF + adapter, merged HF, GGUF) and the worker loop."""
