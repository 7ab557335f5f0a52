"""RQ jobs: thin adapters that build an app, call the engine and report progress into job.meta."""
