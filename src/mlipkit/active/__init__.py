"""Active learning: choosing what to label next."""
