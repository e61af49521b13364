"""Training machinery: the one loop for one or K GANs and what a run folder promises.

train          `train_and_evaluate(config, workdir)`, `train_replicas`: the loop
replicas       what K GANs in one program need beyond one: stacking, configs, the step
run_setup      before a run: `preflight` (every check), `host_batches`, clearing a folder
run_actions    periodic outputs: scalar log, sample grids, evaluation, best checkpoint
checkpoint     Orbax checkpoints, `load_run`
run_lock       one writer per run folder
rollback_state the rollbacks of the run a checkpoint belongs to (rollbacks.json)
distributed    several processes: `jax.distributed`, stop votes, barriers
signals        stopping a run cleanly on SIGTERM / SIGINT
lifeline       child processes that stop when their parent dies (sweep --jobs)
"""
