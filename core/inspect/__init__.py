"""Dataset inspection: lint findings, token-length statistics and previews, before any GPU time is spent."""
