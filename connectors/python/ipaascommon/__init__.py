"""PowerFlow-compatible helpers for stepflow's Python step host."""
