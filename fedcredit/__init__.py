"""fedcredit: privacy-preserving joint modeling of credit risk.

Parties (banks, credit-information platforms) each run a party process over
their own data, align customers with private set intersection, and train
shared risk models (vertical SecureBoost and logistic regression with
Paillier/CKKS, horizontal FedAvg with secure aggregation) without raw data
leaving its owner.
"""

__version__ = "0.1.0"
