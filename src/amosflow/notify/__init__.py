"""Notifications of human tasks: email and Slack/Teams webhooks, off by default (decision 0034).

Every message carries a deep link into the console and nothing else one could act on: a
task is decided in the console or through the API, never from a mail or a chat post.
"""

from amosflow.notify.message import TaskNotification, console_link
from amosflow.notify.send import notify_task

__all__ = ["TaskNotification", "console_link", "notify_task"]
