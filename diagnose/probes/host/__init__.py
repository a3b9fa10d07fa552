"""The TMG host's TCP state: read live on the host (`probe`) or from what an administrator exports
there (`exports`: netstat, netsh dynamic port range, Tcpip events 4227/4231)."""
