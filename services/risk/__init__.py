"""risk: the policy every proposal passes, the portfolio, and the operator's control API."""
