"""Monitoring: drift, live quality from the prediction log, retraining decisions."""
