"""One calendar-day in Redis: its keys, its fenced lease, its command stream and state."""
