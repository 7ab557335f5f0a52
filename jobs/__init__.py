"""RQ jobs: thin adapters that build an app, call one operation and report progress into job.meta."""
