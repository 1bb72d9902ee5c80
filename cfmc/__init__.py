"""cfmc: Bayesian crystal design with a space-group-informed transformer prior and MCMC."""

__version__ = "0.1.0"
