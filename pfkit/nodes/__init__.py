"""Node kinds: python tools, prompt templates, llm calls."""
