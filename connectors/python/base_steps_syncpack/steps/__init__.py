"""QueryREST and QueryGQL, to subclass from Python steps."""
