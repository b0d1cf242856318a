"""One cell's training job: its program, loop, measurements, limits and strategies."""
