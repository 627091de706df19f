"""raycat: hierarchical product categorization from text and images, tuned and
ensembled on Ray, improved by active learning."""

__version__ = "0.1.0"
