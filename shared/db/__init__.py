"""Storage: models, sessions and the queries both sides share."""
