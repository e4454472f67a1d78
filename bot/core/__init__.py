"""The core's vocabulary: events, threads, work, errors, config and the ports."""
