"""ise: Intent -> Simulate -> Execute, training data for OS agents."""
