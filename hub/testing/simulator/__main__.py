"""``python -m hub.testing.simulator``: serve the simulator in the foreground."""
from hub.testing.simulator import main

main()
