"""Notifications: routed alerts, Slack posts and SES email.

Prefect tasks around the functions of the `nura` package: the task is what a flow
calls (and what the Prefect UI shows as a task run); the work is the plain function.
"""

from prefect import task

from nura.notify import dispatch, ses, slack

notify = task(name="notify", retries=0)(dispatch.notify)
retry_notifications = task(name="retry-notifications", retries=0)(dispatch.retry_notifications)
send_slack = task(name="slack-post", retries=0)(slack.send_slack)
send_email = task(name="ses-send-email", retries=0)(ses.send_email)

__all__ = ["notify", "retry_notifications", "send_email", "send_slack"]
