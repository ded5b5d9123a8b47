"""Search strategies, peers behind one interface (`base.Strategy`), one module each, registered here in the
order the dashboard cycles through them."""

from engine.registry import register
from engine.strategies import baselines, beam, best_of_n, mcmc, smc, sps, vote

register(beam.INFO)
register(mcmc.INFO)
register(smc.INFO)
register(sps.INFO)
register(best_of_n.INFO)
register(vote.INFO)
register(baselines.GREEDY)
register(baselines.SAMPLE)
