"""Discord: the gateway for messages and slash commands, the REST API for answers."""
