"""Email: team notifications, replies and transcripts to visitors, digests (SMTP via aiosmtplib)."""
