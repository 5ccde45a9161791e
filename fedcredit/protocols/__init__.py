"""Federated protocols: one folder per protocol, one file per role."""
