"""stepflow's Python versions of the PowerFlow Base Steps SyncPack steps that other steps subclass."""
