"""Jobs: runs, evaluations, exports, probes and inspections; each a folder with one worker, a lock and a status."""
