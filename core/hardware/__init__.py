"""This machine: what it has (CPU, RAM, GPUs, precision) and the GPU readings sampled while a job runs."""
