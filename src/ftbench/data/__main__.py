"""`python -m ftbench.data`: the builder rules' program (ftbench.data.build)."""

from ftbench.data.build import main

main()
