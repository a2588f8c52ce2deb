"""PowerFlow-compatible step base class for stepflow's Python step host."""
