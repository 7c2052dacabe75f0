"""Services: task commands, the runner (leases, recovery), the event bus."""
