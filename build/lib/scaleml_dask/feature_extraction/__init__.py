"""Feature extraction: text to sparse features (``text``)."""
