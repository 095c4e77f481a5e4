"""Fine-tuning files: example records and formats, cleaning pipeline, splits, validation, tokens."""
