"""The coordinator: job submission, miner registration, assignment with leases, receipts."""
