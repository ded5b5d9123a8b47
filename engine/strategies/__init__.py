"""Search strategies, peers behind one interface (`base.Strategy`), one module each."""
