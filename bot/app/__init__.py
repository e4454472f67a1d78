"""The composition root: the ``chatbrush`` command, the runtime it opens."""
