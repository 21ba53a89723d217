"""`gkjk relay`: Grafana webhook notifications in, Chinese alarm messages out to DingTalk robots and SMS.

A notification is turned into one message per alert and recipient, stored in a durable outbox before Grafana gets
its 200, and delivered at least once with retries, rate limits and dead letters. See docs/relay.md.
"""
