"""Text classification: the head over embeddings, zero-shot, fine-tuning, label issues, consensus."""
