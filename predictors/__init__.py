"""Property predictors and the conditioners that turn them into log p(y|C) terms."""
