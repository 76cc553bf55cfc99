"""Use cases of the control plane: every state change goes through here."""
