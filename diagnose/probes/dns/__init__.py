"""Name resolution as the TMG host does it: its HOSTS file (`hosts`), then its DNS servers, asked
live (`probe`) or replayed from answers recorded on the host (`recorded`)."""
