"""The reliability battery (issue 16): real processes, real faults, a checker over the history.

``harness`` starts and hurts the node's processes (SIGKILL, SIGSTOP/SIGCONT, a TCP proxy
that cuts a link) and records each fault with the seed of its schedule; ``checker`` reads
what happened (the target's side effects, the run index, the audit trail) and names each
broken promise. Each bug the battery found has its own test here, named for the promise.
"""
