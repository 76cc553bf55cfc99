"""Runners: outbound-only workers in other network zones, and the control plane that feeds them.

Two packages that never share a process's needs: ``runner.agent`` is the runner process
(no control-plane code), ``runner.dispatch`` the control plane's side (leases, CA,
endpoint). This package exports nothing, so importing the agent loads nothing of dispatch.
"""

__all__: list[str] = []
