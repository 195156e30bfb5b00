"""One OpenMP thread for the e5 scorer: the test machine is a busy 2-core box, where
threads spinning against each other make it ~10x slower than one thread."""
import os

os.environ.setdefault("NEWSPICGEN_EVAL_THREADS", "1")
