"""Scoring a fine-tuned model on an exported test split (`labelloop evaluate`): metrics, the
reference perplexity under a local causal model, and the HTML report."""
