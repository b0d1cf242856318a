"""ftbench: benchmark LLM fine-tuning over models x parallelism strategies x GPU counts."""

__version__ = "0.1.0"
