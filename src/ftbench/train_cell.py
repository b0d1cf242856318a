"""`python -m ftbench.train_cell`, as users and earlier launch lines call it: ftbench.train.job."""

from ftbench.train.job import main

if __name__ == "__main__":
    main()
