"""GPU kernels (Triton) for the decode step; each has a torch twin that runs everywhere."""
