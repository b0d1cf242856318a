"""`python -m ftbench.launch`: the launcher (ftbench.launch.launcher)."""

from ftbench.launch.launcher import main

main()
