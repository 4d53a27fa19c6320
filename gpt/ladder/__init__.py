"""The ladder: its rungs (the lecture's 1-7 and the second flight 8-14), the second flight's models, and what
each rung adds as a diff of the code."""
